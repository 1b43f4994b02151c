"""Errors a user can act on. The CLI prints them as one line, without a traceback."""

from __future__ import annotations


class PancapError(Exception):
    """Base class of every error pancap reports to a user."""


class DatasetError(PancapError):
    """A dataset cannot be found, read or split as asked."""


class CaptionFileError(PancapError):
    """A captions file cannot be read or has no usable record."""


class RegistryError(PancapError):
    """An unknown name was asked of a registry."""


class OptionError(PancapError, ValueError):
    """An option has the wrong type or a value out of its range (a ValueError too, for callers that catch those)."""


class ModelLoadError(PancapError):
    """Model weights cannot be loaded (offline, missing directory, wrong format)."""


class RetrievalError(PancapError):
    """Retrieval inputs are unusable: wrong shapes, k larger than the gallery, unknown ids, bad options."""


class ImageSizeError(PancapError, ValueError):
    """A caption's boxes are in a dialect that is read on the image's size (asmv2, pixel), and the size is unknown."""
