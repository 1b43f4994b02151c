"""What the script tests share: loading a script from ``scripts/`` as a module, and the JSON-native check."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def _load_script(name: str):
    """``scripts/NAME.py`` as a module, registered in ``sys.modules`` (dataclasses look their module up there)."""
    spec = importlib.util.spec_from_file_location(f"script_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _json_native(value) -> bool:
    """True when ``value`` is made of what ``json`` writes by itself: no numpy bool or integer, no tensor or array
    (a numpy float is a ``float``)."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_native(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_json_native(v) for v in value)
    return value is None or type(value) in (bool, int, str) or isinstance(value, float)


@pytest.fixture(scope="session")
def load_script():
    return _load_script


@pytest.fixture(scope="session")
def json_native():
    return _json_native
