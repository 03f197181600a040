"""Perennial's domain: pure, typed, testable without Azure. Nothing here imports functions/ or devhost/."""

from importlib import metadata

try:
    __version__ = metadata.version("perennial")
except metadata.PackageNotFoundError:  # running from a source tree that was not pip-installed
    __version__ = "0.0.0+source"
