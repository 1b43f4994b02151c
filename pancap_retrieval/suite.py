"""Evaluation suites: ``eval_suites/*.yaml`` loaded into validated models (an unknown key is an error)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pancap_retrieval.errors import PancapError


class SuiteError(PancapError):
    """A suite file cannot be read or does not validate."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetSpec(_Strict):
    name: str = Field(
        description="registry name or name:ARG, e.g. sample, docci:/data/docci, imagefolder:PATH"
    )
    split: str | None = None
    limit: int | None = Field(default=None, ge=1)


class CaptionerSpec(_Strict):
    name: str = Field(description="captioner registry name, or a label for a precomputed file")
    file: str | None = Field(
        default=None, description="precomputed captions file (then name is only a label)"
    )
    model: str | None = None
    batch_size: int | None = Field(default=None, ge=1)
    options: dict[str, Any] = Field(default_factory=dict)


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
        if value not in ("strip", "keep") and not value.startswith("rewrite:hf:"):
            raise ValueError("text_prep must be strip, keep or rewrite:hf:MODEL")
        return value


class ReconstructionSpec(_Strict):
    redrawer: str = "sketch"
    model: str | None = None
    steps: int | None = Field(default=None, ge=1)
    scores: bool = True
    options: dict[str, Any] = Field(default_factory=dict)


class Suite(_Strict):
    name: str
    description: str = ""
    dataset: DatasetSpec
    captioners: list[CaptionerSpec] = Field(min_length=1)
    embedders: list[EmbedderSpec] = Field(default_factory=lambda: [EmbedderSpec()], min_length=1)
    retrieval: RetrievalSpec = Field(default_factory=RetrievalSpec)
    reconstruction: ReconstructionSpec | None = None
    seed: int = 0


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite file; every problem is reported as one :class:`SuiteError` line."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise SuiteError(f"suite file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SuiteError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise SuiteError(f"{path}: a suite is a mapping of keys")
    try:
        return Suite.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise SuiteError(f"{path}: {problems}") from None
