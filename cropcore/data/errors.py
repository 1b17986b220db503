"""Errors the data layer raises, with messages that say how to fix the problem."""

from __future__ import annotations


class DatasetNotFoundError(FileNotFoundError):
    """Files of a region are missing; the message names them and the command that fetches them."""


class DataFormatError(ValueError):
    """A file exists but does not hold what the official layout promises (names the file and parcel)."""
