"""Presets for long-caption retrieval sets, built on the ``hf:`` loader (:mod:`pancap_retrieval.data.hf`).

- ``urban1k:ARG`` — Urban1k (Long-CLIP; ``BeichenZhang/Urban1k``, CC BY-NC 4.0): 1,000 images with long captions,
  shipped as ``Urban1k.zip`` holding ``image/NAME.jpg`` and ``caption/NAME.txt``. ARG is the unpacked folder, a
  folder holding ``Urban1k.zip``, or ``BeichenZhang/Urban1k@REVISION`` (the zip is fetched from the Hub).
- ``iiw:DIR`` — ImageInWords (``google/imageinwords``, CC BY 4.0, a loading script that ``datasets`` >= 4 refuses):
  DIR is its ``datasets/`` folder (``CONFIG/data.jsonl`` with ``IIW`` and ``image`` keys); ``config`` is one of
  its folders (``IIW-400``, ``DCI_Test``, ``DOCCI_Test``) and ``images`` the folder of your DOCCI or DCI images.
- ``sharegpt4v-1k:ARG`` — ShareGPT4V captions (``Lin-Chen/ShareGPT4V``) over your COCO / SA-1B images
  (``images``: the folder its ``image`` paths are relative to). Two incompatible definitions are in use, so one
  must be named: ``definition=first-1k`` (Long-CLIP, TULIP, FG-CLIP: the first 1,000 entries of
  ``share-captioner_coco_lcs_sam_1246k_1107.json``) or ``definition=sam-10k`` (LoTLIP, FLAIR: the SA-1B-only
  ``share4v_sam_10k.json``). ARG is a folder holding the file, or ``Lin-Chen/ShareGPT4V@REVISION``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pancap_retrieval.data.hf import Opened, guarded, open_source, to_pancap
from pancap_retrieval.data.meta import DatasetMeta
from pancap_retrieval.data.records import check_limit, choose_split, is_hub_id
from pancap_retrieval.errors import DatasetError

if TYPE_CHECKING:
    import datasets

URBAN1K = DatasetMeta(
    name="urban1k",
    loader="pancap_retrieval.data.presets:load_urban1k",
    help="Urban1k (Long-CLIP): 1,000 city photos with long captions, from Urban1k.zip, CC BY-NC 4.0",
    usage="`urban1k:DIR` or `urban1k:BeichenZhang/Urban1k@REVISION` (preset: Urban1k)",
    spec="urban1k:DIR | urban1k:BeichenZhang/Urban1k@REVISION",
    source="Urban1k.zip unpacked, a folder holding it, or BeichenZhang/Urban1k@REVISION on the Hub",
    splits=("test",),
    default_split="test",
    revisioned=True,
    hub_options=True,
)
IIW = DatasetMeta(
    name="iiw",
    loader="pancap_retrieval.data.presets:load_iiw",
    help="ImageInWords descriptions (config IIW-400, DCI_Test or DOCCI_Test) over your DOCCI/DCI images, CC BY 4.0",
    usage="`iiw:DIR` (preset: ImageInWords, with config=NAME and images=DIR)",
    spec="iiw:DIR with config=IIW-400|DCI_Test|DOCCI_Test and images=DIR",
    source="the datasets/ folder of github.com/google/imageinwords; images=DIR of DOCCI or DCI images",
    splits=("test",),
    default_split="test",
    revisioned=True,
    hub_options=True,
)
SHAREGPT4V_1K = DatasetMeta(
    name="sharegpt4v-1k",
    loader="pancap_retrieval.data.presets:load_sharegpt4v_1k",
    help="ShareGPT4V captions over your COCO/SA-1B images; definition=first-1k (first 1,000 of the 1.2M file: "
    "Long-CLIP, TULIP) or definition=sam-10k (share4v_sam_10k.json: LoTLIP, FLAIR), no default",
    usage="`sharegpt4v-1k:DIR` (preset: ShareGPT4V, with definition=first-1k|sam-10k and images=DIR)",
    spec="sharegpt4v-1k:DIR with definition=first-1k|sam-10k and images=DIR",
    source="a folder with the ShareGPT4V json, or Lin-Chen/ShareGPT4V@REVISION; images=DIR",
    splits=("test",),
    default_split="test",
    revisioned=True,
    hub_options=True,
)
URBAN1K_REPO = "BeichenZhang/Urban1k"
URBAN1K_ZIP = "Urban1k.zip"
IIW_CONFIGS = ("IIW-400", "DCI_Test", "DOCCI_Test")
SHAREGPT4V_REPO = "Lin-Chen/ShareGPT4V"
SHAREGPT4V_FILES = {
    "first-1k": ("share-captioner_coco_lcs_sam_1246k_1107.json", 1000),
    "sam-10k": ("share4v_sam_10k.json", None),
}
SHAREGPT4V_HELP = (
    "sharegpt4v-1k has two incompatible definitions: definition=first-1k (Long-CLIP, TULIP, FG-CLIP: the first "
    "1,000 entries of share-captioner_coco_lcs_sam_1246k_1107.json) or definition=sam-10k (LoTLIP, FLAIR: the "
    "SA-1B-only share4v_sam_10k.json)"
)


def _refuse(kind: str, **given: Any) -> None:
    named = [name for name, value in given.items() if value is not None]
    if named:
        raise DatasetError(f"{kind} takes no {', '.join(named)}")


def _hub_file(kind: str, arg: str, revision: str | None, filename: str) -> Path:
    """``filename`` of the Hub dataset repo ``arg`` at a pinned ``revision``, fetched (or found in the cache)."""
    if revision is None:
        raise DatasetError(f"{kind}: a Hub dataset must be pinned: {kind}:{arg}@REVISION")
    from huggingface_hub import hf_hub_download

    call = lambda: hf_hub_download(arg, filename, repo_type="dataset", revision=revision)  # noqa: E731
    return Path(guarded(f"{kind}:{arg}", {"revision": revision}, call))


def _local(kind: str, arg: str | None, example: str) -> Path:
    if not arg:
        raise DatasetError(f"{kind} needs a source: {example}")
    path = Path(arg).expanduser()
    if not path.exists():
        raise DatasetError(f"{kind}: no such folder: {path}; {example}")
    return path.resolve()


def _table(rows: dict[str, list[Any]]) -> datasets.Dataset:
    import datasets

    return datasets.Dataset.from_dict(rows)


# ---------------------------------------------------------------- Urban1k


def load_urban1k(
    arg: str | None, split: str | None = None, limit: int | None = None, revision: str | None = None
) -> datasets.Dataset:
    """Urban1k from its unpacked folder, a folder holding ``Urban1k.zip``, or the Hub (pinned); split ``test``."""
    check_limit(limit)
    if arg is not None and is_hub_id(arg) and not Path(arg).exists():
        root = _unpacked(_hub_file("urban1k", arg, revision, URBAN1K_ZIP))
    else:
        if revision is not None:
            raise DatasetError(f"urban1k: {arg} is a local folder; a revision pins the Hub repository only")
        root = _local("urban1k", arg, f"urban1k:DIR (the unpacked {URBAN1K_ZIP}) or urban1k:{URBAN1K_REPO}@REVISION")
        if (root / URBAN1K_ZIP).is_file() and not _pairs_folder(root):
            root = _unpacked(root / URBAN1K_ZIP)
    folder = _pairs_folder(root)
    if folder is None:
        raise DatasetError(f"urban1k: no image/ and caption/ folders in {root} (unpack {URBAN1K_ZIP} there)")
    images = {p.stem: p for p in sorted((folder / "image").iterdir()) if p.is_file()}
    captions = {p.stem: p for p in sorted((folder / "caption").glob("*.txt"))}
    unpaired = sorted(set(images) ^ set(captions))
    if unpaired:
        raise DatasetError(f"urban1k: {len(unpaired)} images or captions have no partner in {folder}: {unpaired[:5]}")
    chosen = choose_split(URBAN1K.name, split, URBAN1K.splits, URBAN1K.default_split or "")
    table = _table(
        {
            "id": list(images),
            "image": [str(path) for path in images.values()],
            "caption": [captions[name].read_text(encoding="utf-8").strip() for name in images],
        }
    )
    identity = ["urban1k", str(folder), [(name, p.stat().st_size, p.stat().st_mtime_ns) for name, p in captions.items()]]
    opened = Opened(f"urban1k:{arg}", table, chosen, root=folder, identity=identity, license="CC BY-NC 4.0")
    return to_pancap(opened, limit, {"id": "id", "image": "image", "text": "caption"}, None)


def _unpacked(archive: Path) -> Path:
    import datasets

    return Path(guarded(f"urban1k:{archive}", {}, lambda: datasets.DownloadManager().extract(str(archive))))


def _pairs_folder(root: Path) -> Path | None:
    for folder in (root, *sorted(p for p in root.iterdir() if p.is_dir())):
        if (folder / "image").is_dir() and (folder / "caption").is_dir():
            return folder
    return None


# ---------------------------------------------------------------- ImageInWords


def load_iiw(
    arg: str | None,
    split: str | None = None,
    limit: int | None = None,
    revision: str | None = None,
    *,
    config: str | None = None,
    images: str | None = None,
    columns: dict[str, str] | None = None,
    definition: str | None = None,
) -> datasets.Dataset:
    """ImageInWords descriptions (``IIW``) of one config over your DOCCI or DCI images (``images``)."""
    check_limit(limit)
    _refuse("iiw", definition=definition)
    if config is None:
        raise DatasetError(f"iiw needs a config: one of {', '.join(IIW_CONFIGS)} (--dataset-option config=NAME)")
    if images is None:
        raise DatasetError("iiw ships descriptions only: give the folder of your DOCCI or DCI images as images=DIR")
    wanted = {"id": None, "image": "image", "text": "IIW", **(columns or {})}
    wanted = {role: name for role, name in wanted.items() if name}
    if arg is not None and is_hub_id(arg) and not Path(arg).exists():  # a mirror of the set on the Hub
        opened = open_source(arg, split, revision, config)
    else:
        root = _local("iiw", arg, "iiw:DIR, the datasets/ folder of github.com/google/imageinwords")
        files = sorted(p.parent.name for p in root.glob("*/data.jsonl"))
        if not (root / config / "data.jsonl").is_file():
            raise DatasetError(f"iiw: no config {config!r} in {root}; found: {', '.join(files) or '(none)'}")
        opened = _json_split(IIW, root / config / "data.jsonl", split)
    opened.license = "CC BY 4.0"
    return to_pancap(opened, limit, wanted, images)


def _json_split(meta: DatasetMeta, file: Path, split: str | None) -> Opened:
    """A JSON or JSON-lines file as the preset's one split, streamed."""
    import datasets

    chosen = choose_split(meta.name, split, meta.splits, meta.default_split or "")
    label = f"{meta.name}:{file}"
    call = lambda: datasets.load_dataset("json", data_files={chosen: str(file)}, split=chosen, streaming=True)  # noqa: E731
    table = guarded(label, {}, call)
    identity = [str(file), file.stat().st_size, file.stat().st_mtime_ns]
    return Opened(label, table, chosen, root=file.parent, identity=identity)


# ---------------------------------------------------------------- ShareGPT4V-1k


def _gpt_turn(row: dict[str, Any]) -> dict[str, Any]:
    """The caption of a ShareGPT4V entry: its first ``gpt`` turn."""
    turns = row.get("conversations") or []
    return {"caption": next((t.get("value") for t in turns if t.get("from") == "gpt"), None)}


def load_sharegpt4v_1k(
    arg: str | None,
    split: str | None = None,
    limit: int | None = None,
    revision: str | None = None,
    *,
    definition: str | None = None,
    images: str | None = None,
    config: str | None = None,
    columns: dict[str, str] | None = None,
) -> datasets.Dataset:
    """ShareGPT4V captions by one of the two definitions (no default), over your COCO / SA-1B images."""
    check_limit(limit)
    _refuse("sharegpt4v-1k", config=config, columns=columns)
    if definition not in SHAREGPT4V_FILES:
        given = f" (got {definition!r})" if definition is not None else ""
        raise DatasetError(f"{SHAREGPT4V_HELP}: pass one with --dataset-option definition=NAME{given}")
    if images is None:
        raise DatasetError("sharegpt4v-1k ships captions only: give the folder its image paths start from as images=DIR")
    filename, count = SHAREGPT4V_FILES[definition]
    if arg is not None and is_hub_id(arg) and not Path(arg).exists():
        file = _hub_file("sharegpt4v-1k", arg, revision, filename)
    else:
        root = _local("sharegpt4v-1k", arg, f"sharegpt4v-1k:DIR (holding {filename}) or sharegpt4v-1k:{SHAREGPT4V_REPO}@REVISION")
        file = root / filename if root.is_dir() else root
        if not file.is_file():
            raise DatasetError(f"sharegpt4v-1k: {filename} not found in {root} (definition={definition})")
    opened = _json_split(SHAREGPT4V_1K, file, split)
    opened.table = opened.table.map(_gpt_turn)
    if count is not None:
        opened.table = opened.table.take(count)
    opened.identity.append(definition)
    return to_pancap(opened, limit, {"id": "id", "image": "image", "text": "caption"}, images)
