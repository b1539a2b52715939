"""Alive: bring a photo to life, safely, with Content Credentials."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("alive")  # pyproject.toml's version: the one place it is written
except PackageNotFoundError:  # a checkout run without `pip install -e .`
    __version__ = "0+unknown"

# Who made a video, as its signed C2PA manifest says (claim_generator_info) and VideoInfo's
# provenance.claim_generator returns.
CLAIM_GENERATOR = f"Alive/{__version__}"
