"""Fixtures of the reconstruction tests: real photos and a real headless browser (the pipelines: tests/conftest.py)."""

from __future__ import annotations

import shutil

import pytest


@pytest.fixture(scope="session")
def photos() -> dict[str, object]:
    """Real photos shipped in scikit-image, shrunk to a long side of 160 pixels (RGB PIL images)."""
    from PIL import Image
    from skimage import data

    out = {}
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        image = Image.fromarray(getattr(data, name)()).convert("RGB")
        image.thumbnail((160, 160))
        out[name] = image
    return out


@pytest.fixture(scope="session")
def chromium() -> str:
    """The headless browser of the gallery test: Debian's ``chromium``. Its absence is a failure, not a skip."""
    path = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if path is None:
        pytest.fail(
            "chromium is not installed: `apt-get install -y chromium` (the gallery test needs a real browser)"
        )
    return path
