"""A run folder as a Hugging Face dataset (``pancap export RUN --to DIR``), and its captions read back for import.

The dataset has one row per image of the run's dataset: ``example_id``, ``description`` (and ``descriptions``
where the set has several per image), and per system NAME the columns ``NAME_caption``, ``NAME_status``,
``NAME_boxes`` (a list of ``{phrase, x1, y1, x2, y2}`` structs, xyxy in [0, 1] of the image), ``NAME_c2d_rank``
(the rank of the image's description for its caption), with reconstruction ``NAME_cosine`` and
``NAME_boxes_refound``, and with ``--with-images`` ``NAME_redraw`` (an ``Image``). It is written as parquet shards
under ``data/`` plus a dataset card (``README.md``) whose YAML front matter holds the config, the features, the
licence of the source dataset and a ``pancap`` mapping (version, source dataset with its revision and digest, the
suite, the systems, the retrieval rule); the body holds the leaderboard. ``datasets.load_dataset(DIR)`` loads it.

Everything is written in a temporary folder beside the target and renamed into place at the end; a push to the Hub
(``datasets``' own ``push_to_hub``) happens before that rename, so a failed push leaves nothing behind.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pancap_retrieval.artifacts import file_name, read_json
from pancap_retrieval.directions import CAPTION_TO_DESCRIPTION, of
from pancap_retrieval.errors import PancapError
from pancap_retrieval.results import normalise_row
from pancap_retrieval.runs import RETRIEVAL_DIR, ranks_file

log = logging.getLogger(__name__)

SHARD_ROWS = 1000
CARD_KEY = "pancap"


class ExportError(PancapError):
    """A run folder cannot be exported, or an exported dataset cannot be read."""


def _run_results(run_dir: Path) -> tuple[dict[str, Any], Path]:
    """results.json of the run (the first embedder's where there are several) and the folder holding it."""
    for folder in [run_dir, *sorted(p.parent for p in run_dir.glob("*/results.json"))]:
        results = read_json(folder / "results.json")
        if isinstance(results, dict):
            return results, folder
    raise ExportError(f"{run_dir} has no results.json: not a finished pancap run (run `pancap run` first)")


def _boxes(caption: str | None, width: int, height: int) -> list[dict[str, Any]]:
    from pancap_retrieval.captions import parse_caption

    if not caption:
        return []
    parsed = parse_caption(caption, width=width or None, height=height or None)
    return [
        {"phrase": entity.phrase, "x1": box.x1, "y1": box.y1, "x2": box.x2, "y2": box.y2}
        for entity in parsed.entities
        for box in entity.boxes
    ]


def _features(systems: list[str], multi: bool, reconstruction: bool, with_images: bool) -> Any:
    import datasets

    columns: dict[str, Any] = {"example_id": datasets.Value("string"), "description": datasets.Value("string")}
    if multi:
        columns["descriptions"] = datasets.Sequence(datasets.Value("string"))
    box = {name: datasets.Value("float32") for name in ("x1", "y1", "x2", "y2")}
    for name in systems:
        columns[f"{name}_caption"] = datasets.Value("string")
        columns[f"{name}_status"] = datasets.Value("string")
        columns[f"{name}_boxes"] = datasets.List({"phrase": datasets.Value("string"), **box})
        columns[f"{name}_c2d_rank"] = datasets.Value("int32")
        if reconstruction:
            columns[f"{name}_cosine"] = datasets.Value("float64")
            columns[f"{name}_boxes_refound"] = datasets.Value("float64")
        if with_images:
            columns[f"{name}_redraw"] = datasets.Image()
    return datasets.Features(columns)


def _system_inputs(run_dir: Path, results_dir: Path, suite: Any, split: str, name: str) -> dict[str, Any]:
    """What the run holds of one system: its captions by id, c2d ranks, per-image reconstruction scores."""
    from pancap_retrieval.captions.store import CaptionStore, store_path

    store = store_path(run_dir, name, suite.dataset.name, split)
    if not store.is_file():
        raise ExportError(f"{run_dir}: the captions of {name!r} are missing ({store})")
    ranks = read_json(ranks_file(results_dir / RETRIEVAL_DIR, name)) or {}
    reconstruction = read_json(run_dir / "reconstruction.json") or {}
    per_image = ((reconstruction.get("captioners") or {}).get(name) or {}).get("per_image") or {}
    return {
        "records": {r.example_id: r for r in CaptionStore(store).records()},
        "c2d": of(ranks, CAPTION_TO_DESCRIPTION) or {},
        "per_image": per_image,
        "redraws": run_dir / "images" / file_name(name),
    }


def _rows(dataset: Any, systems: dict[str, dict[str, Any]], flags: dict[str, bool]) -> Iterator[dict[str, Any]]:
    from pancap_retrieval.data.records import DESCRIPTIONS_COLUMN

    columns = ["example_id", "description", "width", "height"] + (
        [DESCRIPTIONS_COLUMN] if flags["multi"] else []
    )
    for row in dataset.select_columns(columns):
        example_id = row["example_id"]
        out = {"example_id": example_id, "description": row["description"]}
        if flags["multi"]:
            out["descriptions"] = row[DESCRIPTIONS_COLUMN]
        for name, inputs in systems.items():
            record = inputs["records"].get(example_id)
            caption = record.caption if record is not None and record.status == "ok" else None
            out[f"{name}_caption"] = caption
            out[f"{name}_status"] = record.status if record is not None else "missing"
            out[f"{name}_boxes"] = _boxes(caption, row["width"], row["height"])
            out[f"{name}_c2d_rank"] = inputs["c2d"].get(example_id)
            if flags["reconstruction"]:
                scores = inputs["per_image"].get(example_id) or {}
                out[f"{name}_cosine"] = scores.get("cosine")
                out[f"{name}_boxes_refound"] = scores.get("boxes_refound")
            if flags["with_images"]:
                redraw = inputs["redraws"] / f"{file_name(example_id)}.png"
                out[f"{name}_redraw"] = (
                    {"bytes": redraw.read_bytes(), "path": redraw.name} if redraw.is_file() else None
                )
        yield out


def build_export(run_dir: str | Path, with_images: bool = False) -> tuple[Any, dict[str, Any], str]:
    """The run as a ``datasets.Dataset`` (one row per image), the card's ``pancap`` metadata and the card body."""
    import datasets

    from pancap_retrieval.data import load_dataset
    from pancap_retrieval.suite import Suite, validated

    run_dir = Path(run_dir)
    results, results_dir = _run_results(run_dir)
    suite_data = read_json(run_dir / "suite.json")
    if not isinstance(suite_data, dict):
        raise ExportError(f"{run_dir} has no suite.json: not a pancap run folder")
    suite = validated(Suite, suite_data, f"{run_dir / 'suite.json'}: ")
    dataset = load_dataset(suite.dataset)
    split = dataset.select_columns(["split"])[0]["split"] if len(dataset) else "test"
    rows = [normalise_row(row) for row in results.get("rows", [])]
    names = [row["system"] for row in rows if row["kind"] == "captioner"]  # the systems that wrote captions
    systems = {name: _system_inputs(run_dir, results_dir, suite, split, name) for name in names}
    flags = {
        "multi": "descriptions" in dataset.column_names,
        "reconstruction": (run_dir / "reconstruction.json").is_file(),
        "with_images": with_images,
    }
    features = _features(names, flags["multi"], flags["reconstruction"], with_images)
    rows = list(_rows(dataset, systems, flags))
    table = datasets.Dataset.from_list(rows, features=features)
    metadata = {
        "version": _version(),
        "source": results.get("dataset") or {},
        "suite": suite.model_dump(exclude_none=True),
        "systems": names,
        "split": split,
        "retrieval_rule": (results.get("manifest") or {}).get("retrieval_rule"),
        "columns": "per system NAME: NAME_caption, NAME_status, NAME_boxes (phrase, x1, y1, x2, y2 in [0, 1]), "
        "NAME_c2d_rank (rank of the image's description for the caption)"
        + (", NAME_cosine, NAME_boxes_refound" if flags["reconstruction"] else "")
        + (", NAME_redraw" if with_images else ""),
    }
    leaderboard = results_dir / "leaderboard.md"
    body = leaderboard.read_text(encoding="utf-8") if leaderboard.is_file() else ""
    return table, metadata, body


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pancap")
    except PackageNotFoundError:  # pragma: no cover - running from a checkout that is not installed
        return "unknown"


def card_text(table: Any, metadata: dict[str, Any], body: str) -> str:
    """The dataset card: YAML front matter (licence, config, features, pancap) and the leaderboard."""
    import yaml
    from datasets import DatasetInfo
    from datasets.info import DatasetInfosDict
    from huggingface_hub import DatasetCardData

    source = metadata["source"]
    split = metadata["split"]
    card_data = DatasetCardData(
        license=source.get("license") or "unknown",
        pretty_name=f"pancap results: {metadata['suite'].get('name')} on {source.get('name')}",
        configs=[{"config_name": "default", "data_files": [{"split": split, "path": f"data/{split}-*.parquet"}]}],
    )
    DatasetInfosDict({"default": DatasetInfo(features=table.features)}).to_dataset_card_data(card_data)
    front = card_data.to_dict()
    front[CARD_KEY] = json.loads(json.dumps(metadata, default=str))
    revision = source.get("revision") or "none (local data)"
    text = (
        f"# pancap results: {metadata['suite'].get('name')}\n\n"
        f"Captions, boxes, ranks and reconstruction scores of {len(metadata['systems'])} systems on "
        f"{source.get('name')} (split {split}, revision {revision}, rows sha256 {source.get('rows_sha256')}), "
        f"made with pancap {metadata['version']}. One row per image; {metadata['columns']}.\n\n"
        f"Retrieval rule: {metadata['retrieval_rule']}.\n\n## Leaderboard\n\n{body}\n"
    )
    return "---\n" + yaml.safe_dump(front, sort_keys=False, allow_unicode=True) + "---\n\n" + text


def export_run(
    run_dir: str | Path,
    to: str | Path | None,
    *,
    with_images: bool = False,
    push_to_hub: str | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write the run as a Hugging Face dataset in ``to`` and/or push it to the Hub repository ``push_to_hub``."""
    if to is None and push_to_hub is None:
        raise ExportError("say where the export goes: --to DIR and/or --push-to-hub OWNER/NAME")
    target = Path(to) if to is not None else None
    if target is not None and target.exists() and any(target.iterdir()) and not overwrite:
        raise ExportError(f"{target} exists and is not empty; pass --overwrite to replace it or choose another --to")
    table, metadata, body = build_export(run_dir, with_images)
    parent = target.parent if target is not None else Path(tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".pancap-export-", dir=parent))
    work.chmod(0o755)  # mkdtemp makes it private; the export is an ordinary folder
    try:
        files = _write(work, table, metadata, body)
        if push_to_hub is not None:
            _push(work, push_to_hub, metadata["split"])
        if target is not None:
            if target.exists():
                shutil.rmtree(target)
            os.replace(work, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"to": str(target) if target else None, "pushed_to": push_to_hub, "rows": len(table), "files": files}


def _write(folder: Path, table: Any, metadata: dict[str, Any], body: str) -> list[str]:
    split = metadata["split"]
    shards = max(1, math.ceil(len(table) / SHARD_ROWS))
    (folder / "data").mkdir()
    files = []
    for index in range(shards):
        name = f"data/{split}-{index:05d}-of-{shards:05d}.parquet"
        table.shard(shards, index, contiguous=True).to_parquet(str(folder / name))
        files.append(name)
    (folder / "README.md").write_text(card_text(table, metadata, body), encoding="utf-8")
    return [*files, "README.md"]


def _push(folder: Path, repo_id: str, split: str) -> None:
    """``datasets``' own push_to_hub of the written dataset, then its card; any failure is one line."""
    import datasets
    from huggingface_hub import DatasetCard

    try:
        loaded = datasets.load_dataset(str(folder), split=split)
        loaded.push_to_hub(repo_id, split=split)
        DatasetCard.load(folder / "README.md").push_to_hub(repo_id)
    except Exception as exc:
        reason = " ".join((str(exc) or type(exc).__name__).split())[:300]
        raise ExportError(
            f"cannot push to the Hub repository {repo_id!r} ({type(exc).__name__}: {reason}); nothing was "
            "written: check the network and your token (huggingface-cli login), or export with --to DIR only"
        ) from None


# ---------------------------------------------------------------- reading an export back


def card_metadata(folder: str | Path) -> dict[str, Any] | None:
    """The ``pancap`` mapping of an exported dataset's card; None when ``folder`` is not one."""
    import yaml

    readme = Path(folder) / "README.md"
    if not readme.is_file():
        return None
    text = readme.read_text(encoding="utf-8")
    if not text.startswith("---\n"):
        return None
    front = yaml.safe_load(text[4 : text.find("\n---", 4)])
    value = front.get(CARD_KEY) if isinstance(front, dict) else None
    return value if isinstance(value, dict) else None


def check_system(folder: str | Path, system: str) -> bool:
    """Whether ``folder`` is a dataset written by pancap export; if so, ``system`` must be one of its systems."""
    metadata = card_metadata(folder) if Path(folder).is_dir() else None
    if metadata is None:
        return False
    systems = metadata.get("systems") or []
    if system not in systems:
        raise ExportError(f"{folder} has no system {system!r}; it holds: {', '.join(systems)} (pass one as --captioner)")
    return True


def write_captions_of(folder: str | Path, system: str, out: str | Path) -> Path:
    """The captions of ``system`` in an exported dataset, written as a pancap captions file (JSONL) at ``out``."""
    import datasets

    from pancap_retrieval.artifacts import atomic_write

    if not check_system(folder, system):
        raise ExportError(f"{folder} is not a dataset written by pancap export (no pancap section in README.md)")
    split = (card_metadata(folder) or {}).get("split") or "test"
    table = datasets.load_dataset(str(folder), split=split).select_columns(
        ["example_id", f"{system}_caption", f"{system}_status"]
    )
    lines = []
    for row in table:
        status, caption = row[f"{system}_status"], row[f"{system}_caption"]
        if status == "missing":
            continue
        record = {"example_id": row["example_id"], "caption": caption, "status": "ok" if caption else "failed"}
        if not caption:
            record["error"] = f"no caption in the export ({status})"
        lines.append(json.dumps(record, ensure_ascii=False))
    return atomic_write(out, "".join(line + "\n" for line in lines))
