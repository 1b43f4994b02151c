"""`pancap list KIND --options` shows every entry's options, read from the signatures the registries check."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from pancap_retrieval.cli import cli
from pancap_retrieval.errors import ModelLoadError
from pancap_retrieval.loading import resolve_model

KINDS = {
    "datasets": ("pancap_retrieval.data", "DATASETS"),
    "captioners": ("pancap_retrieval.captioners", "CAPTIONERS"),
    "retrievers": ("pancap_retrieval.retrieval.image_text", "RETRIEVERS"),
    "embedders": ("pancap_retrieval.retrieval.embedder", "EMBEDDERS"),
    "backends": ("pancap_retrieval.retrieval.index", "SEARCH_BACKENDS"),
    "redrawers": ("reconstruct.redrawers", "REDRAWERS"),
    "judges": ("pancap_retrieval.pancapscore.judges", "JUDGES"),
    "text-preps": ("pancap_retrieval.retrieval.textprep", "TEXT_PREPS"),
}


@pytest.mark.parametrize("kind", KINDS)
def test_every_entry_of_every_registry_lists_its_options(kind):
    import importlib

    module, attribute = KINDS[kind]
    registry = getattr(importlib.import_module(module), attribute)
    result = CliRunner().invoke(cli, ["list", kind, "--options"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for name in registry.names():
        header = next(i for i, line in enumerate(lines) if line.startswith(f"{name}  "))
        listed = []
        for line in lines[header + 1:]:
            if not line.startswith("    "):
                break
            listed.append(line.strip())
        expected = [option.name for option in registry.options(name)]
        assert [line.split(":")[0].split(" =")[0] for line in listed if line != "(no options)"] == expected


def test_options_show_type_default_and_range():
    output = CliRunner().invoke(cli, ["list", "captioners", "--options"]).output
    assert "    score_threshold: float = 0.3" in output  # detector
    assert "    max_new_tokens: int = 1024 (>= 1)" in output  # pancapchain
    redrawers = CliRunner().invoke(cli, ["list", "redrawers", "--options"]).output
    assert "    steps: int = 50 (>= 1)" in redrawers  # gligen
    embedders = CliRunner().invoke(cli, ["list", "embedders", "--options"]).output
    assert "    long_text: 'chunk' | 'truncate' = 'chunk'" in embedders


def test_plain_list_is_unchanged():
    output = CliRunner().invoke(cli, ["list", "redrawers"]).output
    assert [line.split()[0] for line in output.splitlines()] == ["gligen", "sketch", "text2image"]
    assert "steps:" not in output


def test_a_missing_local_folder_is_named_as_a_folder(tmp_path, monkeypatch):
    """`checkpoints/x` where ./checkpoints exists is a path, not a hub id: the error names the missing folder."""
    (tmp_path / "checkpoints").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelLoadError, match=r"model folder not found: .*checkpoints/pancapchain-13b-hf") as info:
        resolve_model("checkpoints/pancapchain-13b-hf")
    assert "Hugging Face cache" not in str(info.value)
    with pytest.raises(ModelLoadError, match="no such directory"):
        resolve_model("../checkpoints/missing")
