"""Alive: bring a photo to life, safely, with Content Credentials."""

from __future__ import annotations

from functools import cache


@cache
def _version() -> str:
    # importlib.metadata costs ~20 ms to import and read: only what signs a video (and
    # asks for the version) pays it, not every command-line start.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("alive")  # pyproject.toml's version: the one place it is written
    except PackageNotFoundError:  # a checkout run without `pip install -e .`
        return "0+unknown"


def __getattr__(name: str) -> str:
    if name == "__version__":
        return _version()
    # Who made a video, as its signed C2PA manifest says (claim_generator_info) and
    # VideoInfo's provenance.claim_generator returns.
    if name == "CLAIM_GENERATOR":
        return f"Alive/{_version()}"
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
