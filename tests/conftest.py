"""Shared fixtures: every test runs offline, as CI does; tiny random-weight models saved once per session.

The models come from :mod:`pancap_retrieval.testing` and are loaded by the tests through the real loaders.
"""

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
def dump_dom():
    """A function that opens a page in headless Chromium and returns its DOM after the page's scripts ran."""
    import shutil
    import subprocess
    import tempfile

    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        pytest.fail("chromium is not installed: `apt-get install -y chromium` (this test needs a browser)")

    def dump(url: str) -> str:
        with tempfile.TemporaryDirectory() as profile:
            return subprocess.run(
                [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 f"--user-data-dir={profile}", "--dump-dom", url],
                capture_output=True, text=True, timeout=60,
            ).stdout  # fmt: skip

    return dump


@pytest.fixture(scope="session")
def sapancap_captions() -> list[dict]:
    """The 630 real SA-Pancap ground-truth captions shipped in the package (val then test)."""
    items = []
    for split in ("val", "test"):
        items += json.loads((SAPANCAP_DIR / f"sapancap_{split}_gtcaption.json").read_text())
    return items


# ------------------------------------------------------------------------------ captioning models


@pytest.fixture(scope="session")
def tiny_llava(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny LLaVA in the converted format (vicuna_v1 template, pad mode), as `pancap convert llava` writes it."""
    from pancap_retrieval.testing import random_llava, save_pretrained

    return save_pretrained(tmp_path_factory.mktemp("tiny_llava"), *random_llava("tiny", seed=0))


@pytest.fixture(scope="session")
def tiny_blip2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BLIP-2 with its processor, laid out as ``Salesforce/blip2-opt-*``."""
    from pancap_retrieval.testing import random_blip2, save_pretrained

    return save_pretrained(tmp_path_factory.mktemp("tiny_blip2"), *random_blip2(seed=0))


@pytest.fixture(scope="session")
def tiny_qwen25vl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Qwen2.5-VL and its tokenizer (no processor: it needs torchvision)."""
    from pancap_retrieval.testing import random_qwen25vl, save_pretrained

    return save_pretrained(tmp_path_factory.mktemp("tiny_qwen25vl"), *random_qwen25vl(seed=0))


# ------------------------------------------------------------------------------ causal LMs


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny causal LM without a chat template: prompts are plain text (the caption rewriter's fallback)."""
    from pancap_retrieval.testing import random_causal_lm, save_pretrained

    return save_pretrained(tmp_path_factory.mktemp("tiny_lm"), *random_causal_lm(seed=0))


@pytest.fixture(scope="session")
def tiny_chat_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny causal LM with a chat template, as instruction-tuned judges have."""
    from pancap_retrieval.testing import CHAT_TEMPLATE, random_causal_lm, save_pretrained

    model, tokenizer = random_causal_lm(chat_template=CHAT_TEMPLATE, seed=0)
    return save_pretrained(tmp_path_factory.mktemp("tiny_chat_lm"), model, tokenizer)


# ------------------------------------------------------------------------------ diffusion pipelines


@pytest.fixture(scope="session")
def tiny_gligen_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight GLIGEN pipeline of the real architecture, saved with ``save_pretrained``."""
    from pancap_retrieval.testing import save_random_gligen

    return save_random_gligen(tmp_path_factory.mktemp("gligen") / "tiny-gligen", "tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight Stable Diffusion text-to-image pipeline (plain UNet), saved with ``save_pretrained``."""
    from pancap_retrieval.testing import random_sd_pipeline, save_pretrained

    return save_pretrained(tmp_path_factory.mktemp("sd") / "tiny-sd", random_sd_pipeline(seed=1))


@pytest.fixture(scope="session")
def tiny_pixart_sigma_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight PixArt-Sigma pipeline, the paper's redrawer, saved with ``save_pretrained``."""
    from pancap_retrieval.testing import random_pixart_sigma_pipeline, save_pretrained

    path = tmp_path_factory.mktemp("pixart") / "tiny-pixart-sigma"
    return save_pretrained(path, random_pixart_sigma_pipeline(seed=0))
