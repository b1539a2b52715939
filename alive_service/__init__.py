"""Alive: bring a photo to life, safely, with Content Credentials."""

__version__ = "0.1.0"
