"""Read captions from every file format the toolkit meets.

- our caption store JSONL: ``{example_id, caption, stages, status, error, meta}``;
- the paper repository's answer files (JSONL): ``{question_id, image, text, ...}`` (LLaVA-style ``model_vqa``
  output), one file or a folder of them (PancapChain writes one file per image);
- the paper repository's JSON lists: ``[{image_path, model_response}]`` and ``[{image_path, gt_response}]``;
- plain text: one caption, its id the file's stem.

Records with an image path take the path's stem as ``example_id`` (``sam/sa_000045/sa_507752.jpg`` -> ``sa_507752``),
the convention every dataset of the toolkit follows for file-based images.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

from pancap_retrieval.captions.store import CaptionRecord, CaptionStore
from pancap_retrieval.errors import CaptionFileError

TEXT_KEYS = ("caption", "model_response", "gt_response", "text", "answer", "response")
ID_KEYS = ("example_id", "question_id", "image_id", "id")
# An image path names the image better than a running question index: the paper's PancapChain answer files hold
# ``{"question_id": 0, "image": "sam/sa_000045/sa_507752.jpg", "text": ...}``.
PATH_KEYS = ("image_path", "image", "image_file")


def example_id_from_path(path: str) -> str:
    """The id of a file-based image: its file name without extension.

    >>> example_id_from_path("sam/sa_000045/sa_507752.jpg")
    'sa_507752'
    """
    return PurePosixPath(path.replace("\\", "/")).stem


def _record(data: Any, where: str) -> CaptionRecord:
    if not isinstance(data, dict):
        raise CaptionFileError(f"{where}: expected a JSON object, got {type(data).__name__}")
    if "example_id" in data and ("status" in data or "caption" in data):
        return CaptionRecord.from_dict(data)
    text_key = next((k for k in TEXT_KEYS if k in data), None)
    if text_key is None:
        raise CaptionFileError(f"{where}: no caption field (one of {', '.join(TEXT_KEYS)})")
    path_key = next((k for k in PATH_KEYS if isinstance(data.get(k), str) and data[k]), None)
    if path_key is not None:
        example_id = example_id_from_path(data[path_key])
    else:
        id_key = next((k for k in ID_KEYS if k in data), None)
        if id_key is None:
            raise CaptionFileError(f"{where}: no id field (image_path or one of {', '.join(ID_KEYS)})")
        example_id = str(data[id_key])
    text = data[text_key]
    if not isinstance(text, str):
        raise CaptionFileError(f"{where}: caption is not text")
    meta = {"source_format": text_key}
    if path_key is not None:  # the image it names: where its size can be read from
        meta["image_path"] = data[path_key]
    return CaptionRecord(example_id, text, meta=meta)


def read_captions(path: str | Path) -> list[CaptionRecord]:
    """All caption records of a file, in file order (the last one per id kept for our store files)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".json", ".jsonl") and p.is_file())
        if not files:
            raise CaptionFileError(f"no .json or .jsonl captions files in {path}")
        return [record for file in files for record in read_captions(file)]
    if not path.is_file():
        raise CaptionFileError(f"captions file not found: {path}")
    try:
        raw = path.read_text(encoding="utf-8-sig")  # a byte-order mark is not part of the first record
    except (OSError, UnicodeDecodeError) as exc:
        raise CaptionFileError(f"cannot read captions file {path}: {exc.__class__.__name__}") from None
    stripped = raw.lstrip()
    if not stripped:
        raise CaptionFileError(f"captions file is empty: {path}")
    if stripped.startswith("["):
        try:
            items = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise CaptionFileError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        return [_record(item, f"{path}[{i}]") for i, item in enumerate(items)]
    if stripped.startswith("{"):
        first = json.loads(stripped.splitlines()[0]) if _is_json(stripped.splitlines()[0]) else None
        if isinstance(first, dict) and "example_id" in first and ("status" in first or "caption" in first):
            return CaptionStore(path, input_file=True).records()
        records = []
        for number, line in enumerate(raw.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError:
                raise CaptionFileError(f"{path}:{number}: not a JSON line") from None
            records.append(_record(data, f"{path}:{number}"))
        return records
    return [CaptionRecord(path.stem, raw.strip(), meta={"source_format": "text"})]


def _is_json(line: str) -> bool:
    try:
        json.loads(line)
    except json.JSONDecodeError:
        return False
    return True
