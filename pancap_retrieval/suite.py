"""Evaluation suites: ``eval_suites/*.yaml`` loaded into validated models (an unknown key is an error)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pancap_retrieval.errors import PancapError


class SuiteError(PancapError):
    """A suite file cannot be read or does not validate."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetColumns(_Strict):
    """Which columns of a Hugging Face dataset (``hf:`` and its presets) hold the image, the description(s), the id."""

    image: str | None = Field(
        default=None, description="Image feature, image bytes, or a path relative to the set or to `images`"
    )
    text: str | None = Field(
        default=None, description="description column: a string, or a list of strings (several per image)"
    )
    id: str | None = Field(default=None, description="example id column (rows sharing an id are one image)")


class DatasetSpec(_Strict):
    """A dataset as a run names it, parsed once: kind, argument, split, limit and the Hub revision it is pinned to.

    ``name`` is kept in canonical form, ``KIND[:ARG][@REVISION]``, so that passed on as a string it still names the
    same data; ``revision`` comes from ``@REVISION`` in the name or from its own key (both must agree).
    """

    name: str = Field(
        description="KIND or KIND:ARG, e.g. sample, docci:./data/docci, docci:OWNER/MIRROR@REVISION, imagefolder:PATH"
    )
    split: str | None = None
    limit: int | None = Field(default=None, ge=1)
    revision: str | None = Field(
        default=None, description="branch, tag or commit of a dataset on the Hub (docci:OWNER/MIRROR)"
    )
    config: str | None = Field(default=None, description="configuration (subset) of an hf: dataset, e.g. DOCCI_Test")
    columns: DatasetColumns | None = Field(default=None, description="column names of an hf: dataset")
    images: str | None = Field(
        default=None, description="folder of the images of an hf: dataset that ships descriptions only"
    )
    definition: str | None = Field(
        default=None, description="which definition of a preset that has several (sharegpt4v-1k: first-1k | sam-10k)"
    )

    @model_validator(mode="before")
    @classmethod
    def _parse_name(cls, data: Any) -> Any:
        if isinstance(data, str):
            data = {"name": data}
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            return data  # pydantic reports the missing or mistyped field
        if not isinstance(data.get("revision"), str | None):
            return data
        from pancap_retrieval.data import split_spec

        try:
            kind, arg, revision = split_spec(data["name"], data.get("revision"))
        except PancapError as exc:
            raise ValueError(str(exc)) from None
        name = kind if arg is None else f"{kind}:{arg}"
        from pancap_retrieval.data.hf import check_loader_options

        try:
            check_loader_options(kind, data)
        except PancapError as exc:
            raise ValueError(str(exc)) from None
        return {**data, "name": name + (f"@{revision}" if revision else ""), "revision": revision}

    def loader_options(self) -> dict[str, Any]:
        """The options given for an ``hf:`` dataset or preset (config, columns, images, definition), set ones only."""
        options = {name: getattr(self, name) for name in ("config", "images", "definition")}
        if self.columns is not None:
            options["columns"] = self.columns.model_dump(exclude_none=True)
        return {name: value for name, value in options.items() if value is not None}

    @property
    def kind(self) -> str:
        """The registry name: ``docci`` of ``docci:./data/docci``."""
        return self.name.partition(":")[0]

    @property
    def arg(self) -> str | None:
        """What follows ``KIND:``, without ``@REVISION``; None for a bare kind."""
        _, sep, arg = self.name.partition(":")
        if not sep:
            return None
        return arg.removesuffix(f"@{self.revision}") if self.revision else arg


class CaptionerSpec(_Strict):
    name: str = Field(description="captioner registry name, or a label for a precomputed file")
    file: str | None = Field(
        default=None, description="precomputed captions file (then name is only a label)"
    )
    model: str | None = None
    batch_size: int | None = Field(default=None, ge=1)
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        return _check_name(value, "captioner name")

    def captioner_options(self) -> dict[str, Any]:
        """The options the captioner is built with: ``model`` (when given) and ``options``.

        ``batch_size`` is not among them: it is the runner's batch size (images per call).
        """
        return {**({"model": self.model} if self.model else {}), **self.options}


class EmbedderSpec(_Strict):
    name: str = "minilm"
    long_text: Literal["chunk", "truncate"] = "chunk"
    batch_size: int | None = Field(default=None, ge=1)


class RetrievalSpec(_Strict):
    backend: str = "faiss"
    text_prep: str = Field(default="strip", description="strip | keep | rewrite:hf:MODEL")
    bootstrap_samples: int = Field(default=1000, ge=0)

    @field_validator("text_prep")
    @classmethod
    def _known_prep(cls, value: str) -> str:
        from pancap_retrieval.retrieval.textprep import parse_text_prep

        try:
            parse_text_prep(value)
        except PancapError as exc:
            raise ValueError(str(exc)) from None
        return value


class ReconstructionSpec(_Strict):
    redrawer: str = "sketch"
    model: str | None = None
    steps: int | None = Field(default=None, ge=1)
    scores: bool = True
    options: dict[str, Any] = Field(default_factory=dict)


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")


def _check_name(value: str, what: str) -> str:
    """A name that becomes a folder or file name: letters, digits and ``._+-``, no path separators."""
    if not _NAME.fullmatch(value):
        raise ValueError(
            f"{what} {value!r} must be letters, digits and . _ + - only (no / or spaces), at most 100 characters"
        )
    return value


class Suite(_Strict):
    name: str
    description: str = ""
    dataset: DatasetSpec
    captioners: list[CaptionerSpec] = Field(min_length=1)
    embedders: list[EmbedderSpec] = Field(default_factory=lambda: [EmbedderSpec()], min_length=1)
    retrieval: RetrievalSpec = Field(default_factory=RetrievalSpec)
    reconstruction: ReconstructionSpec | None = None
    seed: int = 0

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        return _check_name(value, "suite name")


_Spec = TypeVar("_Spec", bound=BaseModel)


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite file; every problem is reported as one :class:`SuiteError` line."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise SuiteError(f"suite file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise SuiteError(f"{path}: not UTF-8 text (byte {exc.start}); save the suite as UTF-8") from None
    except OSError as exc:
        raise SuiteError(f"{path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise SuiteError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise SuiteError(f"{path}: a suite is a mapping of keys")
    return validated(Suite, data, f"{path}: ")


def validated(model: type[_Spec], data: dict[str, Any], where: str = "") -> _Spec:
    """``model`` validated from ``data``; every problem is reported in one :class:`SuiteError` line."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()
        )
        raise SuiteError(f"{where}{problems}") from None
