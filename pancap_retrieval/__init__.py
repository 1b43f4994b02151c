"""pancap: how much of an image survives in its caption, measured by retrieval and reconstruction."""

__version__ = "0.1.0"
