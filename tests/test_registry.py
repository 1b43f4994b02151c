"""One registry pattern for every kind: one-line descriptions, listing without torch, options checked before building."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from pancap_retrieval.captioners import CAPTIONERS, get_captioner
from pancap_retrieval.cli import cli
from pancap_retrieval.data import DATASETS
from pancap_retrieval.errors import OptionError, PancapError, RegistryError
from pancap_retrieval.pancapscore.judges import JUDGES, get_judge
from pancap_retrieval.registry import Entry, Registry
from pancap_retrieval.retrieval.embedder import EMBEDDERS, build_embedder
from pancap_retrieval.retrieval.index import SEARCH_BACKENDS, search
from pancap_retrieval.retrieval.textprep import TEXT_PREPS
from reconstruct.redrawers import REDRAWERS, get_redrawer

REGISTRIES = {
    "datasets": DATASETS,
    "captioners": CAPTIONERS,
    "embedders": EMBEDDERS,
    "backends": SEARCH_BACKENDS,
    "redrawers": REDRAWERS,
    "judges": JUDGES,
    "text-preps": TEXT_PREPS,
}


@pytest.mark.parametrize("kind", sorted(REGISTRIES))
def test_every_entry_has_a_one_line_description_and_an_importable_target(kind: str) -> None:
    registry = REGISTRIES[kind]
    rows = registry.describe()
    assert [name for name, _ in rows] == registry.names() and rows
    for name, description in rows:
        assert description.strip() and "\n" not in description, (kind, name)
        assert callable(registry.get(name)), (kind, name)


@pytest.mark.parametrize("kind", sorted(REGISTRIES))
def test_list_prints_every_name_with_its_description(kind: str) -> None:
    result = CliRunner().invoke(cli, ["list", kind], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for name, description in REGISTRIES[kind].describe():
        assert any(line.split()[:1] == [name] and line.endswith(description) for line in lines), (name, lines)


def test_listing_every_kind_imports_no_torch() -> None:
    code = (
        "import sys; from click.testing import CliRunner; from pancap_retrieval.cli import cli\n"
        f"for kind in {sorted(REGISTRIES)!r}:\n"
        "    r = CliRunner().invoke(cli, ['list', kind]); assert r.exit_code == 0, r.output\n"
        "print(sorted(m for m in ('torch', 'transformers', 'diffusers', 'faiss') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("kind", "name"), [(kind, name) for kind, registry in sorted(REGISTRIES.items()) for name in registry]
)
def test_an_unknown_option_is_one_line_naming_the_known_ones(kind: str, name: str) -> None:
    with pytest.raises(RegistryError) as info:
        REGISTRIES[kind].build(name, no_such_option=1)
    message = str(info.value)
    assert "\n" not in message and "no option no_such_option" in message and "its options:" in message


def test_unknown_option_names_the_real_ones() -> None:
    with pytest.raises(RegistryError, match=r"captioner 'detector' has no option scor_threshold; .*score_threshold"):
        get_captioner("detector", scor_threshold=0.4)
    with pytest.raises(RegistryError, match=r"redrawer 'sketch' has no option size; its options: canvas_size"):
        get_redrawer("sketch", size=64)
    with pytest.raises(RegistryError, match="nprobe"):
        search(np.eye(3, dtype=np.float32), np.eye(3, dtype=np.float32), 1, backend="faiss-hnsw", nprobe=4)
    with pytest.raises(RegistryError, match="judge 'rule' has no option device; its options: none"):
        get_judge("rule", device="cpu")
    with pytest.raises(RegistryError, match="embedder 'someorg/some-model' has no option long_txt"):
        build_embedder("someorg/some-model", long_txt="chunk")
    with pytest.raises(RegistryError, match="has no option name_or_path"):  # fixed by the entry
        EMBEDDERS.build("minilm", name_or_path="other")


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: get_captioner("detector", batch_size=0), "batch_size=0 must be at least 1"),
        (lambda: get_captioner("detector", score_threshold="abc"), "score_threshold='abc': Input should be a valid"),
        (lambda: get_captioner("detector", dialect="yaml"), "dialect='yaml': Input should be 'norm', 'asmv2' or"),
        (lambda: get_captioner("detector", dialect="[1,"), "dialect='[1,'"),
        (lambda: get_captioner("detector", score_threshold=-5), "score_threshold=-5: Input should be greater than"),
        (lambda: get_captioner("detector", nms_iou=1.5), "nms_iou=1.5: Input should be less than or equal to 1"),
        (lambda: get_captioner("detector", max_relations=-1), "max_relations=-1"),
        (lambda: get_redrawer("gligen", gligen_scheduled_sampling_beta=2), "gligen_scheduled_sampling_beta=2"),
        (lambda: get_redrawer("text2image", guidance_scale=-1), "guidance_scale=-1"),
        (lambda: get_captioner("pancapchain", max_new_tokens=0), "max_new_tokens=0 must be at least 1"),
        (lambda: get_redrawer("sketch", canvas_size=0), "canvas_size=0"),
        (lambda: get_redrawer("gligen", steps="many"), "steps='many'"),
        (lambda: get_redrawer("text2image", guidance_scale=[1]), "guidance_scale=[1]"),
        (lambda: EMBEDDERS.build("minilm", long_text="fold"), "long_text"),
        (lambda: build_embedder("someorg/some-model", batch_size=0), "batch_size=0"),
        (lambda: get_judge("hf:someorg/judge", max_new_tokens=0), "max_new_tokens=0"),
        (lambda: DATASETS.build("sample", arg=None, split="test", limit=0), "limit=0"),
        (lambda: TEXT_PREPS.build("rewrite", model="x", batch_size=0), "batch_size=0"),
        (lambda: TEXT_PREPS.build("rewrite"), "needs the option model"),
        (lambda: SEARCH_BACKENDS.build("faiss-ivf", nprobe="many"), "nprobe='many'"),
    ],
)
def test_a_bad_value_is_one_line_before_anything_loads(build, fragment: str) -> None:
    with pytest.raises(PancapError) as info:
        build()
    message = str(info.value)
    assert "\n" not in message and fragment in message, message


def test_values_are_converted_as_declared_and_reach_the_entry() -> None:
    redrawer = get_redrawer("sketch", canvas_size="64", background=[1, 2, 3])
    assert redrawer.canvas_size == 64 and redrawer.background == (1, 2, 3)
    _, ids = search(np.eye(4, dtype=np.float32), np.eye(4, dtype=np.float32), 2, backend="numpy")
    assert ids[:, 0].tolist() == [0, 1, 2, 3]


def test_option_error_is_a_value_error_too() -> None:
    assert issubclass(OptionError, ValueError) and issubclass(OptionError, PancapError)


def test_unknown_name_lists_the_known_ones() -> None:
    registry = Registry("thing", {"b": Entry("math:isclose", "b"), "a": Entry("math:isclose", "a")})
    with pytest.raises(RegistryError, match="unknown thing 'c'; known: a, b"):
        registry.build("c")


@pytest.mark.parametrize(
    ("option", "fragment"),
    [("batch_size=0", "batch_size=0 must be at least 1"), ("scor_threshold=0.4", "its options: score_threshold")],
)
def test_cli_caption_option_mistake_is_one_line(tmp_path, option: str, fragment: str) -> None:
    args = ["caption", "--captioner", "detector", "--dataset", "sample", "--limit", "1", "--out", str(tmp_path)]
    result = CliRunner().invoke(cli, [*args, "-o", option])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code != 0 and len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert fragment in lines[0]


def test_only_the_reference_captioner_reads_descriptions() -> None:
    """A rerun captions an image again when what its captioner reads changed: only the oracle reads the
    description, so only its captions are redone when a description is edited."""
    from pancap_retrieval.captioners import CAPTIONERS

    reading = [name for name in CAPTIONERS.names() if getattr(CAPTIONERS.get(name), "reads_description", True)]
    assert reading == ["reference"]
