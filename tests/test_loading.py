"""Model loading in one place: device choice (the rank's GPU under a launcher), the dtype table, model folders."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pancap_retrieval.errors import ModelLoadError, OptionError
from pancap_retrieval.loading import choose_device, choose_dtype, model_dir, resolve_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch reporting two GPUs without bf16: what the device and dtype choice reads, nothing is allocated."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)


def test_the_device_asked_wins_and_a_bad_one_is_one_line() -> None:
    assert choose_device("cpu") == torch.device("cpu")
    assert choose_device(torch.device("cuda", 3)) == torch.device("cuda", 3)
    assert choose_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(OptionError, match="unknown device 'gpu0'"):
        choose_device("gpu0")


def test_cpu_without_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert choose_device() == torch.device("cpu") == choose_device("auto")


def test_under_a_launcher_each_rank_takes_its_own_gpu(two_gpus, monkeypatch: pytest.MonkeyPatch) -> None:
    from reconstruct.redrawers.diffusion import resolve_device_dtype

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert choose_device() == torch.device("cuda", 0)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert choose_device() == torch.device("cuda", 1)
    assert resolve_device_dtype(None, None) == (torch.device("cuda", 1), torch.float16)
    monkeypatch.setenv("LOCAL_RANK", "3")  # more processes than GPUs: they share, round robin
    assert choose_device() == torch.device("cuda", 1)


def test_one_dtype_table() -> None:
    assert choose_dtype("cpu") == torch.float32 == choose_dtype(torch.device("cpu"), "auto")
    for names, dtype in ((("bf16", "bfloat16", "BF16"), torch.bfloat16), (("fp16", "float16", "half"), torch.float16)):
        for name in names:
            assert choose_dtype("cpu", name) == dtype
    assert choose_dtype("cpu", "torch.float32") == torch.float32 == choose_dtype("cpu", torch.float32)
    with pytest.raises(OptionError, match="unknown dtype 'fp8'; known: bf16, fp16, fp32"):
        choose_dtype("cpu", "fp8")


def test_gpu_defaults_are_each_components_own(two_gpus, monkeypatch: pytest.MonkeyPatch) -> None:
    assert choose_dtype("cuda") == torch.float16  # bf16 asked by default, the GPU has none
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert choose_dtype("cuda:0") == torch.bfloat16
    assert choose_dtype("cuda", gpu_default="fp16") == torch.float16  # the diffusion redrawers, the embedders
    assert choose_dtype("cuda", "fp32") == torch.float32


def test_local_folders_and_hub_ids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "config.json").write_text("{}")
    assert resolve_model(tmp_path) == str(tmp_path)
    assert model_dir(str(tmp_path)) == tmp_path.resolve()
    with pytest.raises(ModelLoadError, match=r"is not a gligen pipeline directory \(no model_index\.json in it\)"):
        resolve_model(tmp_path, "model_index.json", "gligen pipeline")
    with pytest.raises(ModelLoadError, match="no such directory, and not a hub id of the form owner/name"):
        resolve_model(tmp_path / "missing")
    with pytest.raises(ModelLoadError) as info:
        resolve_model("nobody-xyz/no-such-model-123")
    assert "\n" not in str(info.value) and "pass a local model directory" in str(info.value)
    with pytest.raises(ModelLoadError, match="weights must be local offline: pass a local directory"):
        model_dir("nobody-xyz/no-such-model-123", None, local_only=True)


def test_importing_loading_imports_no_torch() -> None:
    code = "import sys, pancap_retrieval.loading; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_no_other_module_chooses_a_device() -> None:
    pattern = re.compile(r"cuda\.is_available\(|is_bf16_supported\(")
    found = [
        str(path.relative_to(ROOT))
        for folder in ("pancap_retrieval", "reconstruct")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert found == ["pancap_retrieval/loading.py"]
