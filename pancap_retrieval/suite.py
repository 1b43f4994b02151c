"""Evaluation suites: ``eval_suites/*.yaml`` loaded into validated models (an unknown key is an error)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from pancap_retrieval.data.spec import DatasetColumns, DatasetSpec
from pancap_retrieval.errors import PancapError


class SuiteError(PancapError):
    """A suite file cannot be read or does not validate."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CaptionerSpec(_Strict):
    name: str = Field(description="captioner registry name, or a label for a precomputed file")
    file: str | None = Field(
        default=None, description="precomputed captions file (then name is only a label)"
    )
    model: str | None = Field(default=None, description="hub id or local folder of the weights (the option model)")
    batch_size: int | None = Field(
        default=None, ge=1, description="images per call; chosen from free GPU memory when left out"
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="the captioner's own options (`pancap list captioners --options`), as `-o KEY=VALUE`",
    )
    dialect: Literal["auto", "asmv2", "norm", "pixel"] | None = Field(
        default=None,
        description="box dialect of a precomputed file's captions (a registered captioner declares its own)",
    )
    reported: float | None = Field(
        default=None, ge=0, le=100,
        description="the published R@1 of caption -> description, in percent: the leaderboard's reported R@1 column",
    )

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        return _check_name(value, "captioner name")

    @model_validator(mode="after")
    def _dialect_of_a_file(self) -> CaptionerSpec:
        if self.dialect is not None and not self.file:
            raise ValueError("dialect is declared for a captions file only; a registered captioner declares its own")
        return self

    def captioner_options(self) -> dict[str, Any]:
        """The options the captioner is built with: ``model`` (when given) and ``options``.

        ``batch_size`` is not among them: it is the runner's batch size (images per call).
        """
        return {**({"model": self.model} if self.model else {}), **self.options}


class RetrieverSpec(_Strict):
    name: str = Field(
        description="retriever registry name (`pancap list retrievers`), or the row's label when `retriever` names "
        "the entry"
    )
    retriever: str | None = Field(
        default=None,
        description="the registry entry when `name` is a label (e.g. `{name: blip-itr, retriever: blip}` beside a "
        "blip captioner row)",
    )
    model: str | None = Field(default=None, description="hub id or local folder of the weights (the option model)")
    options: dict[str, Any] = Field(
        default_factory=dict, description="the retriever's own options (`pancap list retrievers --options`)"
    )
    reported: float | None = Field(
        default=None, ge=0, le=100,
        description="the published R@1 of image -> description, in percent: the leaderboard's reported R@1 column",
    )

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        return _check_name(value, "retriever name")

    @property
    def entry(self) -> str:
        """The registry entry this row is made by: ``retriever``, else ``name``."""
        return self.retriever or self.name

    def retriever_options(self) -> dict[str, Any]:
        """The options the retriever is built with: ``model`` (when given) and ``options``."""
        return {**({"model": self.model} if self.model else {}), **self.options}


class ReportedSpec(_Strict):
    name: str = Field(description="the row's name (letters, digits and . _ + -)")
    kind: Literal["captioner", "retriever"] = Field(description="what the published system is")
    direction: Literal["caption->description", "image->description"] = Field(
        description="the direction the figure was measured in"
    )
    r_at_1: float = Field(ge=0, le=100, description="the published R@1, in percent")
    source: str = Field(default="", description="where the figure is published")

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        return _check_name(value, "reported row name")


class EmbedderSpec(_Strict):
    name: str = Field(
        default="minilm", description="embedder registry name, or any sentence-transformers hub id or folder"
    )
    long_text: Literal["chunk", "truncate"] = Field(
        default="chunk", description="texts over the model's window: embedded in windows, or cut at the window"
    )
    batch_size: int | None = Field(default=None, ge=1, description="texts per encoder call")


class RetrievalSpec(_Strict):
    backend: str = Field(default="faiss", description="search backend (`pancap list backends`)")
    text_prep: str = Field(default="strip", description="strip | keep | rewrite:hf:MODEL")
    bootstrap_samples: int = Field(default=1000, ge=0, description="bootstrap resamples for the 95% intervals")

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
    redrawer: str = Field(default="sketch", description="redrawer (`pancap list redrawers`)")
    model: str | None = Field(default=None, description="hub id or local folder of the redrawer's pipeline")
    steps: int | None = Field(default=None, ge=1, description="denoising steps; the redrawer's default when left out")
    scores: bool = Field(default=True, description="score each redraw against its original")
    options: dict[str, Any] = Field(
        default_factory=dict, description="the redrawer's own options (`pancap list redrawers --options`)"
    )


class PancapScoreSpec(_Strict):
    reference: str = Field(
        description="what every captioner is scored against: a captions file, the shipped SA-Pancap ground truth "
        "(sapancap:test or sapancap:val), or dataset (the run dataset's own descriptions)"
    )
    judge: str = Field(default="rule", description="rule (offline: tag and location) or hf:MODEL_ID_OR_DIR")


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")


def _check_name(value: str, what: str) -> str:
    """A name that becomes a folder or file name: letters, digits and ``._+-``, no path separators."""
    if not _NAME.fullmatch(value):
        raise ValueError(
            f"{what} {value!r} must be letters, digits and . _ + - only (no / or spaces), at most 100 characters"
        )
    return value


class Suite(_Strict):
    name: str = Field(description="the suite's name (letters, digits and . _ + -); the default run folder runs/NAME")
    description: str = Field(default="", description="one line on what the suite measures")
    dataset: DatasetSpec = Field(description="a spec string, or a mapping with name, split, limit, revision")
    retrievers: list[RetrieverSpec] = Field(
        default_factory=list, description="rows of their own: image-text retrievers, images against descriptions"
    )
    captioners: list[CaptionerSpec] = Field(
        default_factory=list, validate_default=True, description="the rows: captioners or captions files"
    )
    reported: list[ReportedSpec] = Field(
        default_factory=list,
        description="reported-only rows: published figures of systems not run here (no public weights); the "
        "leaderboard shows them in its reported R@1 column, with kind reported",
    )
    embedders: list[EmbedderSpec] = Field(
        default_factory=lambda: [EmbedderSpec()], min_length=1, description="text embedders; one run folder each"
    )
    retrieval: RetrievalSpec = Field(default_factory=RetrievalSpec, description="search and text preparation")
    reconstruction: ReconstructionSpec | None = Field(
        default=None, description="redraw each image from its caption and score the redraw (left out: no redraws)"
    )
    pancapscore: PancapScoreSpec | None = Field(
        default=None, description="PancapScore of every captioner against a reference (left out: not scored)"
    )
    seed: int = Field(default=0, description="seed of the bootstrap, the redraws and every sampled choice")

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        return _check_name(value, "suite name")

    @field_validator("captioners")
    @classmethod
    def _has_rows(cls, value: list[CaptionerSpec], info: ValidationInfo) -> list[CaptionerSpec]:
        if not value and not info.data.get("retrievers"):
            raise ValueError("a suite lists at least one captioner or retriever: its rows")
        return value

    @model_validator(mode="after")
    def _unique_row_names(self) -> Suite:
        names = [s.name for s in (*self.captioners, *self.retrievers, *self.reported)]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(
                f"row names must be unique across captioners, retrievers and reported rows: {', '.join(twice)} "
                "appears more than once (each row has its own results and ranks files)"
            )
        return self

    def reported_rows(self) -> dict[str, dict[str, Any]]:
        """system -> its published R@1 (a fraction, as results hold recall) with kind and direction: the
        ``reported:`` of the captioners and retrievers, and the reported-only rows (``reported_only``)."""
        out: dict[str, dict[str, Any]] = {}
        for kind, specs, d in (
            ("captioner", self.captioners, "caption->description"),
            ("retriever", self.retrievers, "image->description"),
        ):
            for spec in specs:
                if spec.reported is not None:
                    out[spec.name] = {"kind": kind, "direction": d, "R@1": round(spec.reported / 100, 6)}
        for row in self.reported:
            out[row.name] = {
                "kind": row.kind, "direction": row.direction, "R@1": round(row.r_at_1 / 100, 6),
                "reported_only": True, "source": row.source,
            }  # fmt: skip
        return out


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
    return validated(Suite, with_paths_from(data, path.resolve().parent), f"{path}: ")


# Dataset kinds whose argument is always a local path (docci's may be a Hub mirror instead).
_PATH_KINDS = ("imagefolder", "sapancap")


def with_paths_from(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """The suite ``data`` with its relative paths read against ``base`` (the suite file's folder), not the
    current directory: a captions ``file:`` always; a captioner's or retriever's ``model:``, an embedder or a dataset folder when it is
    written as a path (``./x``, ``../x``, ``~/x``) or exists under ``base``. Anything else (a hub id, a
    registry name) is left as written.

    >>> with_paths_from({"captioners": [{"name": "a", "file": "caps.jsonl"}], "dataset": "imagefolder:imgs"},
    ...                 Path("/suites"))
    {'captioners': [{'name': 'a', 'file': '/suites/caps.jsonl'}], 'dataset': 'imagefolder:/suites/imgs'}
    """
    data = dict(data)
    if isinstance(data.get("captioners"), list):
        data["captioners"] = [_captioner_paths(c, base) for c in data["captioners"]]
    if isinstance(data.get("retrievers"), list):
        data["retrievers"] = [_retriever_paths(r, base) for r in data["retrievers"]]
    if isinstance(data.get("embedders"), list):
        data["embedders"] = [
            {**e, "name": _maybe_path(e["name"], base)} if isinstance(e, dict) and "name" in e else e
            for e in data["embedders"]
        ]
    if isinstance(data.get("reconstruction"), dict) and "model" in data["reconstruction"]:
        data["reconstruction"] = {**data["reconstruction"], "model": _maybe_path(data["reconstruction"]["model"], base)}
    score = data.get("pancapscore")
    reference = score.get("reference") if isinstance(score, dict) else None
    if isinstance(reference, str) and ":" not in reference and reference != "dataset":  # a captions file
        data["pancapscore"] = {**score, "reference": str(base / Path(reference).expanduser())}
    dataset = data.get("dataset")
    if isinstance(dataset, dict) and isinstance(dataset.get("name"), str):
        data["dataset"] = {**dataset, "name": _dataset_path(dataset["name"], base)}
    elif isinstance(dataset, str):
        data["dataset"] = _dataset_path(dataset, base)
    return data


def _captioner_paths(spec: Any, base: Path) -> Any:
    if not isinstance(spec, dict):
        return spec
    spec = dict(spec)
    if isinstance(spec.get("file"), str) and spec["file"]:
        spec["file"] = str(base / Path(spec["file"]).expanduser())
    if "model" in spec:
        spec["model"] = _maybe_path(spec["model"], base)
    return spec


def _retriever_paths(spec: Any, base: Path) -> Any:
    """A retriever's ``model:`` (or ``options: {model: ...}``) read against ``base`` when it is a path."""
    if not isinstance(spec, dict):
        return spec
    spec = dict(spec)
    if "model" in spec:
        spec["model"] = _maybe_path(spec["model"], base)
    if isinstance(spec.get("options"), dict) and "model" in spec["options"]:
        spec["options"] = {**spec["options"], "model": _maybe_path(spec["options"]["model"], base)}
    return spec


def _maybe_path(value: Any, base: Path) -> Any:
    """``value`` read against ``base`` when it is written as a relative path or exists there."""
    if not isinstance(value, str) or not value or Path(value).expanduser().is_absolute():
        return str(Path(value).expanduser()) if isinstance(value, str) and value.startswith("~") else value
    if value.startswith(("./", "../")) or value in (".", "..") or (base / value).exists():
        return str(base / value)
    return value


def _dataset_path(spec: str, base: Path) -> str:
    kind, sep, arg = spec.partition(":")
    if not sep or not arg:
        return spec
    if kind.strip() in _PATH_KINDS and not Path(arg).expanduser().is_absolute():
        return f"{kind}:{base / Path(arg).expanduser()}"
    return f"{kind}:{_maybe_path(arg, base)}"


def validated(model: type[_Spec], data: dict[str, Any], where: str = "") -> _Spec:
    """``model`` validated from ``data``; every problem is reported in one :class:`SuiteError` line."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()
        )
        raise SuiteError(f"{where}{problems}") from None


def suite_reference() -> str:
    """Every key a suite file takes, as Markdown tables made from the models themselves (types from their JSON
    Schema): README's "Suite reference" is this text, and a test keeps it current."""
    sections = [
        ("suite (top level)", Suite),
        ("dataset (a mapping, or the spec string alone)", DatasetSpec),
        ("captioners[] (one mapping per row)", CaptionerSpec),
        ("retrievers[]", RetrieverSpec),
        ("reported[] (one mapping per reported-only row)", ReportedSpec),
        ("embedders[]", EmbedderSpec),
        ("retrieval", RetrievalSpec),
        ("reconstruction", ReconstructionSpec),
        ("pancapscore", PancapScoreSpec),
        ("dataset.columns", DatasetColumns),
    ]
    out = []
    for title, model in sections:
        properties = model.model_json_schema()["properties"]
        out += [f"**{title}**", "", "| key | type | default | what |", "|---|---|---|---|"]
        for name, info in model.model_fields.items():
            default = "required" if info.is_required() else _default_text(info.get_default(call_default_factory=True))
            what = " ".join((info.description or "").split()).replace("|", "\\|")
            out.append(f"| `{name}` | {_schema_type(properties[name])} | {default} | {what} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _schema_type(field_schema: dict[str, Any]) -> str:
    if "anyOf" in field_schema:
        return " or ".join(_schema_type(s) for s in field_schema["anyOf"])
    if "enum" in field_schema:
        return " \\| ".join(f"`{v}`" for v in field_schema["enum"])
    if "$ref" in field_schema:
        return "mapping (below)"
    kind = {"object": "mapping", "null": "null"}.get(field_schema.get("type", "any"), field_schema.get("type", "any"))
    if kind == "array":
        return f"list of {_schema_type(field_schema.get('items', {}))}"
    bounds = [f"{sign} {field_schema[k]}" for k, sign in (("minimum", ">="), ("maximum", "<=")) if k in field_schema]
    if "minItems" in field_schema:
        bounds.append(f"at least {field_schema['minItems']}")
    return kind + (f" ({', '.join(bounds)})" if bounds else "")


def _default_text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, BaseModel):
        return "all defaults"
    if isinstance(value, list) and value and all(isinstance(v, BaseModel) for v in value):
        return f"{len(value)} entry, all defaults" if len(value) == 1 else f"{len(value)} entries"
    return f"`{value}`" if value not in ("", {}, []) else "empty"
