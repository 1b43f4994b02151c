"""Reconstruction: captions -> layouts -> redraws -> fidelity scores and galleries.

Importing this package is cheap (no torch): ``reconstruct_run`` and ``write_gallery`` load on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["reconstruct_run", "write_gallery"]


def __getattr__(name: str) -> Any:
    if name == "reconstruct_run":
        from reconstruct.run import reconstruct_run

        return reconstruct_run
    if name == "write_gallery":
        from reconstruct.gallery import write_gallery

        return write_gallery
    raise AttributeError(f"module 'reconstruct' has no attribute {name!r}")
