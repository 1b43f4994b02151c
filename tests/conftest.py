"""Shared fixtures: every test runs offline, as CI does."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SAPANCAP_DIR = Path(__file__).resolve().parents[1] / "pancap_retrieval" / "data" / "sapancap"


@pytest.fixture(scope="session")
def sapancap_captions() -> list[dict]:
    """The 630 real SA-Pancap ground-truth captions shipped in the package (val then test)."""
    items = []
    for split in ("val", "test"):
        items += json.loads((SAPANCAP_DIR / f"sapancap_{split}_gtcaption.json").read_text())
    return items
