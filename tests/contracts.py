"""Contract test mixins, one per kind of registered entry (diffusers' ``PipelineTesterMixin`` is the model).

A test class per registry entry sets ``name`` (and the options that keep it tiny) and overrides the ``weights``
fixture with two saved random-weight models of different seeds, loaded back through the entry's real loader
(None for an entry without weights). Every contract then checks, for that entry:

- batched equals one by one;
- the manifest has the keys the kind promises, and is JSON;
- the fingerprint that keys reuse changes when the weights change;
- a bad option is a one-line :class:`PancapError` raised by the registry's ``build``, before anything is loaded.

Each ``tests/*/test_contracts.py`` also checks that its contract classes cover every registered name but an
explicit list of entries that cannot be built offline, each with its reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from pancap_retrieval.errors import PancapError


def assert_one_line_error(build: Any, **options: Any) -> str:
    """``build(**options)`` raises a :class:`PancapError` whose message is one line; returns the message."""
    with pytest.raises(PancapError) as info:
        build(**options)
    message = str(info.value)
    assert message and "\n" not in message, message
    return message


def covered(namespace: dict[str, Any], mixin: type) -> set[str]:
    """The registry names of the contract classes of ``mixin`` in a test module's ``namespace``."""
    return {
        value.name
        for value in namespace.values()
        if isinstance(value, type) and issubclass(value, mixin) and "name" in vars(value)
    }


def photos(sizes: Iterable[tuple[int, int]] = ((40, 30), (30, 40), (64, 48), (33, 33))) -> list[Any]:
    """Real photos shipped in scikit-image, of different sizes (prompts and canvases of different lengths)."""
    from PIL import Image
    from skimage import data

    names = ["astronaut", "coffee", "chelsea", "rocket"]
    return [Image.fromarray(getattr(data, n)()).convert("RGB").resize(s) for n, s in zip(names, sizes)]


class _Contract:
    name: ClassVar[str]  # the registry name
    options: ClassVar[dict[str, Any]] = {}  # options that keep the entry tiny and fast
    manifest_keys: ClassVar[tuple[str, ...]] = ()
    bad_options: ClassVar[tuple[dict[str, Any], ...]] = ({"no_such_option": 1}, {"batch_size": 0})

    @pytest.fixture(scope="class")
    def weights(self) -> tuple[Path, Path] | None:
        """Two saved models of the entry's class that differ only in their random seed; None: no weights."""
        return None

    def build(self, model: Path | None, **options: Any) -> Any:
        """The entry built through its registry, on ``model`` (a saved folder) when it has weights."""
        given = {"model": str(model)} if model is not None else {}
        return self.registry().build(self.name, **{**given, **self.options, **options})

    def check_manifest(self, manifest: dict[str, Any]) -> None:
        missing = set(self.manifest_keys) - set(manifest)
        assert not missing, f"{self.name}: manifest lacks {sorted(missing)}"
        json.dumps(manifest, default=str)

    def test_bad_option_is_one_line(self, weights):
        model = weights[0] if weights else None
        for bad in self.bad_options:
            message = assert_one_line_error(self.build, model=model, **bad)
            assert any(option in message for option in bad), message


class CaptionerContract(_Contract):
    """A registered captioner: ``caption_batch`` of N examples equals N calls of one (captions and stages)."""

    manifest_keys = ("name", "box_dialect", "model", "revision")
    batching: ClassVar[dict[str, Any]] = {"batch_size": 4}  # {} for an entry that takes no batch size

    def registry(self) -> Any:
        from pancap_retrieval.captioners import CAPTIONERS

        return CAPTIONERS

    @pytest.fixture(scope="class")
    def examples(self) -> list[Any]:
        from pancap_retrieval.captioners.base import Example

        descriptions = ["An astronaut.", "A cup of coffee [[0.1, 0.2, 0.6, 0.9]].", "A cat.", "A rocket."]
        return [
            Example(f"image{i}", image, image.width, image.height, description)
            for i, (image, description) in enumerate(zip(photos(), descriptions))
        ]

    @pytest.fixture(scope="class")
    def captioner(self, weights, examples):
        return self.build(weights[0] if weights else None, **self.batching)

    def test_batched_equals_one_by_one(self, captioner, examples):
        batched = captioner.caption_batch(examples)
        assert [r.status for r in batched] == ["ok"] * len(examples), [r.error for r in batched]
        singles = [captioner.caption_batch([example])[0] for example in examples]
        assert [(r.example_id, r.caption, r.stages) for r in singles] == [
            (r.example_id, r.caption, r.stages) for r in batched
        ]

    def test_manifest_keys(self, captioner, weights):
        manifest = captioner.manifest()
        self.check_manifest(manifest)
        assert manifest["name"] == self.name
        if weights:
            assert Path(manifest["model"]).name == weights[0].name  # the weights it was given

    def reuse_key(self, model: Path | None) -> str:
        """The fingerprint a run keys this captioner's captions by (a store is reused only under the same one)."""
        from pancap_retrieval.pipeline import caption_inputs
        from pancap_retrieval.suite import CaptionerSpec

        spec = CaptionerSpec(name=self.name, model=str(model) if model else None, options=dict(self.options))
        return caption_inputs(spec, "dataset", "split")["model_fingerprint"]

    def test_fingerprint_changes_with_the_weights(self, weights):
        first, second = weights
        assert self.reuse_key(first) != self.reuse_key(second)
        assert self.reuse_key(first) == self.reuse_key(first)


class RedrawerContract(_Contract):
    """A registered redrawer: ``redraw`` of N layouts equals N calls of one, within ``pixel_tolerance`` 8-bit
    levels (a diffusion batch may differ from single calls by float rounding only)."""

    manifest_keys = ("name", "model", "revision")
    bad_options = ({"no_such_option": 1}, {"canvas_size": 0})
    pixel_tolerance: ClassVar[int] = 0
    captions = (
        "A man [[0.1, 0.1, 0.5, 0.9]] walks a dog [[0.5, 0.5, 0.9, 0.9]] on a beach.",
        "A quiet lake.",  # no boxes: text only
        "A man [[0.2, 0.1, 0.6, 0.9]] walks.",
    )

    def registry(self) -> Any:
        from reconstruct.redrawers import REDRAWERS

        return REDRAWERS

    @pytest.fixture(scope="class")
    def redrawer(self, weights):
        return self.build(weights[0] if weights else None)

    def test_batched_equals_one_by_one(self, redrawer):
        from reconstruct.layout import layout_from_caption

        layouts = [
            layout_from_caption(c, str(i), **redrawer.layout_options()) for i, c in enumerate(self.captions)
        ]
        seeds = [1, 2, 3]
        batched = redrawer.redraw(layouts, seeds)
        assert len(batched) == len(layouts)
        for layout, seed, image in zip(layouts, seeds, batched):
            single = redrawer.redraw([layout], [seed])[0]
            assert single.size == image.size
            difference = np.abs(np.asarray(single, dtype=int) - np.asarray(image, dtype=int)).max()
            assert difference <= self.pixel_tolerance

    def test_manifest_keys(self, redrawer, weights):
        manifest = redrawer.manifest()
        self.check_manifest(manifest)
        assert manifest["name"] == self.name
        assert manifest["model"] == (str(weights[0]) if weights else None)

    def test_fingerprint_changes_with_the_weights(self, weights):
        """The reconstruct stage keys redraws by the content of the model folder the manifest names."""
        from pancap_retrieval.artifacts import path_fingerprint

        first, second = weights
        assert path_fingerprint(first) is not None and path_fingerprint(second) is not None
        assert path_fingerprint(first) != path_fingerprint(second)


class RetrieverContract(_Contract):
    """A registered retriever (or text embedder): features of a batch equal features one at a time, images read
    lazily from an iterable and texts over the window included (``long_text="chunk"``)."""

    manifest_keys = (
        "name",
        "model",
        "revision",
        "fingerprint",
        "text_window",
        "long_text",
        "dtype",
        "device",
    )
    long_text = (
        "a woman in a space suit stands in front of a flag. two dogs play in the grass beside her, 3 cats watch "
        "from a wooden table; a red rocket rises from its launch pad under a blue sky while a cup of coffee cools. "
        "zebras, quiet yaks and jumping kangaroos queue by 9 huge vans; fog wraps the pier, boats bob, gulls cry!"
    )
    texts = ("a photo of a cat on a mat", long_text, "a cup of coffee on a wooden table", "a red rocket")

    def registry(self) -> Any:
        from pancap_retrieval.retrieval.image_text import RETRIEVERS

        return RETRIEVERS

    def build(self, model: Path | None, **options: Any) -> Any:
        return super().build(model, show_progress=False, **options)

    def encode(self, retriever: Any) -> list[np.ndarray]:
        """Every kind of vector the retriever makes, for the contract's inputs."""
        images = photos(((40, 30), (30, 40), (64, 48), (33, 33)))
        return [retriever.encode_images(image for image in images), retriever.encode_texts(list(self.texts))]

    @pytest.fixture(scope="class")
    def retriever(self, weights):
        return self.build(weights[0] if weights else None, batch_size=4, long_text="chunk")

    def test_batched_equals_one_by_one(self, retriever, weights):
        single = self.build(weights[0] if weights else None, batch_size=1, long_text="chunk")
        for batched, one_by_one in zip(self.encode(retriever), self.encode(single)):
            assert batched.dtype == np.float32 and batched.shape == one_by_one.shape
            np.testing.assert_allclose(batched, one_by_one, atol=2e-5)

    def test_manifest_keys(self, retriever):
        manifest = retriever.manifest()
        self.check_manifest(manifest)
        assert manifest["fingerprint"] == retriever.fingerprint and len(retriever.fingerprint) == 16

    def test_fingerprint_changes_with_the_weights(self, retriever, weights, tmp_path):
        """Features are reused under the content fingerprint: other weights change it, another path does not."""
        import shutil

        other = self.build(weights[1])
        assert other.fingerprint != retriever.fingerprint
        moved = Path(shutil.copytree(weights[0], tmp_path / "elsewhere"))
        assert self.build(moved).fingerprint == retriever.fingerprint
