"""The ground floor of a run folder: one key function, one file-name rule, one atomic writer, one append-only store,
one lock.

Every artefact of a run folder is either written whole (temp file in the same folder, fsync, rename: a crash leaves
the old file or the new one, never half of one) or appended one fsynced line at a time to a JSONL store whose torn
tail (the crash case) is dropped with a warning. Every artefact that is reused carries the key of what made it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pancap_retrieval.errors import PancapError


class ArtefactError(PancapError):
    """A run-folder file is unusable: a store line that is not a record, a folder that cannot be written."""


class RunLockedError(PancapError):
    """Another pancap process is writing the same run folder."""


# ---------------------------------------------------------------- keys and names


def key(*parts: Any, length: int = 16) -> str:
    """A stable hash of JSON-able parts: the key that decides whether an artefact can be reused.

    >>> key("detector", {"score_threshold": 0.3}) == key("detector", {"score_threshold": 0.3})
    True
    >>> key("a") != key("b")
    True
    """
    blob = json.dumps(to_jsonable(list(parts)), sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_cache_dir() -> Path:
    """Where embeddings, rewrites and content hashes are cached across runs: ``$PANCAP_CACHE_DIR`` or
    ``~/.cache/pancap``."""
    return Path(os.environ.get("PANCAP_CACHE_DIR") or Path.home() / ".cache" / "pancap")


MISSING_FILE = "missing"  # the digest of a file that cannot be read: it changes as soon as the file appears


def file_digests(paths: list[str | Path] | tuple[str | Path, ...], cache_dir: Path | None = None) -> list[str]:
    """sha256 of each file's bytes (symlinks followed), :data:`MISSING_FILE` for one that cannot be read.

    Each hash is cached in ``CACHE/hashes.sqlite`` under the file's resolved path, size, modification and change
    times (ns) and inode, so an unchanged file is never read again, and a file that changed in any way (a new
    inode, new bytes, even with its old size and modification time restored) is always hashed again.
    """
    stamps: list[str | None] = []
    for path in paths:
        try:
            real = os.path.realpath(path)
            stat = os.stat(real)
            stamps.append(key(real, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, length=40))
        except OSError:
            stamps.append(None)
    cache = DiskCache((cache_dir or default_cache_dir()) / "hashes.sqlite")
    try:
        known = {k: v.decode() for k, (_, v) in cache.get_many([s for s in stamps if s]).items()}
        new: list[tuple[str, int, bytes]] = []
        out = []
        for path, stamp in zip(paths, stamps):
            digest = known.get(stamp) if stamp else None
            if digest is None:
                try:
                    digest = file_digest(path)
                except OSError:
                    digest = MISSING_FILE
                if stamp and digest != MISSING_FILE:
                    known[stamp] = digest
                    new.append((stamp, 0, digest.encode()))
            out.append(digest)
        if new:
            cache.put_many(new)
    finally:
        cache.close()
    return out


def fingerprint_dir(path: str | Path) -> str:
    """A short content fingerprint of a folder (a model's weights): every file's relative path and the sha256 of
    its bytes, symlinks followed (a folder of links changes its fingerprint when a linked file changes). Hashes
    are cached by :func:`file_digests`, so an unchanged folder is not read again."""
    root = Path(path)
    files = sorted(p for p in root.rglob("*") if p.is_file() and ".git" not in p.relative_to(root).parts)
    digests = file_digests(files)
    return key(*[(f.relative_to(root).as_posix(), d) for f, d in zip(files, digests)])


def path_fingerprint(value: Any) -> str | None:
    """For an option that names a local file or folder: a fingerprint of its content, else None."""
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        return None
    path = Path(value).expanduser()
    if path.is_file():
        return key(path.name, file_digests([path])[0])
    if path.is_dir():
        return fingerprint_dir(path)
    return None


_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")


def file_name(text: str) -> str:
    """A file name for an id or a name, distinct for distinct texts.

    A text that is already a safe name (letters, digits, ``._-``, at most 80 characters, not starting with a dot
    or dash) is kept; any other text becomes a cleaned slug, ``~`` and a hash of the text. ``~`` never occurs in a
    kept name, so a cleaned name cannot equal a kept one.

    >>> file_name("sa_507752"), file_name("a b&c.jpg"), file_name("a-b-c-25f45274.jpg")
    ('sa_507752', 'a-b-c.jpg~109a90f2', 'a-b-c-25f45274.jpg')
    """
    if _SAFE.fullmatch(text) and text not in {".", ".."}:
        return text
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:60]
    return f"{slug}~{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def check_distinct_names(ids: list[str] | set[str]) -> None:
    """Raise when two ids map to one file name (a hash collision or a case-insensitive clash)."""
    seen: dict[str, str] = {}
    for example_id in ids:
        name = file_name(example_id).lower()
        if name in seen and seen[name] != example_id:
            raise ArtefactError(
                f"ids {seen[name]!r} and {example_id!r} map to the same file name {name!r}; rename one of them"
            )
        seen[name] = example_id


# ---------------------------------------------------------------- atomic writes


def to_jsonable(value: Any) -> Any:
    """``value`` with numpy/torch scalars and arrays, paths, sets and tuples turned into JSON-native values.

    >>> import numpy as np
    >>> to_jsonable({"ok": np.bool_(True), "x": np.float32(0.5), "v": np.arange(2), "p": Path("a")})
    {'ok': True, 'x': 0.5, 'v': [0, 1], 'p': 'a'}
    """
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return [to_jsonable(v) for v in items]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        return to_jsonable(value.tolist())
    if hasattr(value, "item"):
        return to_jsonable(value.item())
    if hasattr(value, "model_dump"):
        return to_jsonable(value.model_dump())
    return str(value)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` whole or not at all: temp file in the same folder, fsync, rename.

    The file gets the permissions of an ordinary new file (0666 less the umask).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp")
    except OSError as exc:
        raise write_error(path, exc) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise write_error(path, exc) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


TEMP_FILE = re.compile(r"\..+\.tmp")
# The writer's pid in a temp file's name (``.NAME.PID-RANDOM.tmp``), so that a live writer's file is left alone.
TEMP_WRITER = re.compile(r"\.(\d+)-[^.]*\.tmp$")


def remove_temp_files(folder: str | Path) -> int:
    """Remove the temp files (``.NAME.*.tmp``) that writes killed half-way left under ``folder``; how many.

    Called by the process that holds the folder's :class:`RunLock`. The other ranks of a distributed run write
    without the lock, so a temp file whose writer (the pid in its name) is still alive is left alone.
    """
    removed = 0
    for parent, _, names in os.walk(folder):
        for name in names:
            if TEMP_FILE.fullmatch(name) and not _writer_alive(name):
                Path(parent, name).unlink(missing_ok=True)
                removed += 1
    if removed:
        warnings.warn(f"{folder}: removed {removed} temp file(s) left by an interrupted run", stacklevel=2)
    return removed


def _writer_alive(name: str) -> bool:
    """Whether the process that named temp file ``name`` (its pid after the target's name) is still running."""
    match = TEMP_WRITER.search(name)
    if match is None or int(match.group(1)) == os.getpid():
        return False
    try:
        os.kill(int(match.group(1)), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def write_if_changed(path: str | Path, data: str | bytes) -> Path:
    """Write ``data`` atomically unless ``path`` already holds exactly it, so a rerun leaves finished files alone."""
    path = Path(path)
    data = data.encode("utf-8") if isinstance(data, str) else data
    try:
        if path.read_bytes() == data:
            return path
    except OSError:
        pass
    return atomic_write(path, data)


def write_json(path: str | Path, data: Any) -> Path:
    """Write JSON atomically; numpy/torch values are converted, NaN is written as null."""
    text = json.dumps(_nan_to_none(to_jsonable(data)), indent=2, ensure_ascii=False, allow_nan=False)
    return atomic_write(path, text + "\n")


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value


def read_json(path: str | Path) -> Any | None:
    """The JSON in ``path``, or None when the file is missing or broken (a broken artefact is redone)."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        warnings.warn(f"{path}: unreadable, it will be made again", stacklevel=2)
        return None


def save_image(image: Any, path: str | Path, format: str = "PNG", **params: Any) -> Path:
    """Save a PIL image atomically."""
    import io

    buffer = io.BytesIO()
    image.save(buffer, format=format, **params)
    return atomic_write(path, buffer.getvalue())


def image_is_whole(path: str | Path) -> bool:
    """True when ``path`` is an image file that decodes completely (a torn or empty file is not)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
        return True
    except (OSError, ValueError, Image.DecompressionBombError):
        return False


def write_error(path: Path, exc: OSError) -> PancapError:
    """One line for a write that failed: disk full, no permission, read-only file system."""
    if exc.errno == errno.ENOSPC:
        return ArtefactError(f"no space left on the device while writing {path}: free some space and rerun")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return ArtefactError(f"cannot write {path}: {exc.strerror}; choose a writable folder with --out")
    return ArtefactError(f"cannot write {path}: {exc.strerror or exc}")


# ---------------------------------------------------------------- append-only store


STORE_LINE_FIX = "delete that line or rerun with --overwrite"


class JsonlStore:
    """Append-only JSONL of JSON objects, one fsynced line per record.

    A torn line (a crash while appending, a file cut short) is dropped with a warning; with ``repair`` it is cut
    away (the last line) or the file is rewritten without it (a line before the last), so the records it held are
    made again. A line that is valid JSON but not an object (written by hand) is an :class:`ArtefactError` naming
    the file and line.
    """

    def __init__(self, path: str | Path, fix: str = STORE_LINE_FIX) -> None:
        self.path = Path(path)
        self.torn_lines = 0
        self.fix = fix  # what the error of a line that is not a record tells to do

    def read(self, repair: bool = False) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        lines = data.splitlines(keepends=True)
        torn: list[int] = []
        for number, line in enumerate(lines, start=1):
            text = line.strip()
            if not text:
                continue
            try:
                record = json.loads(text)
            except (json.JSONDecodeError, UnicodeDecodeError):
                torn.append(number)
                continue
            if not isinstance(record, dict):
                raise ArtefactError(
                    f"{self.path}:{number}: a {type(record).__name__}, not a JSON object; {self.fix}"
                )
            yield record
        if torn:
            self._drop(lines, torn, repair)
        elif repair and lines and not lines[-1].endswith(b"\n"):
            with self.path.open("ab") as handle:  # a complete record that lost its newline
                handle.write(b"\n")

    def _drop(self, lines: list[bytes], torn: list[int], repair: bool) -> None:
        self.torn_lines += len(torn)
        where = "last line" if torn == [len(lines)] else f"line(s) {', '.join(map(str, torn[:5]))}"
        warnings.warn(f"{self.path}: torn {where} dropped; what it held is made again", stacklevel=4)
        if not repair:
            return
        if torn == [len(lines)]:
            with self.path.open("r+b") as handle:
                handle.truncate(sum(len(line) for line in lines[:-1]))
            return
        kept = [line if line.endswith(b"\n") else line + b"\n" for n, line in enumerate(lines, 1) if n not in torn]
        atomic_write(self.path, b"".join(kept))

    def latest(self, field: str = "example_id") -> dict[str, dict[str, Any]]:
        """The last record per value of ``field``."""
        return {str(r[field]): r for r in self.read() if field in r}

    def append(self, record: Mapping[str, Any]) -> None:
        self.append_many([record])

    def append_many(self, records: list[Mapping[str, Any]] | tuple[Mapping[str, Any], ...]) -> None:
        if not records:
            return
        if self.path.exists() and not getattr(self, "_repaired", False):
            for _ in self.read(repair=True):
                pass
            self._repaired = True
        blob = "".join(json.dumps(to_jsonable(r), ensure_ascii=False) + "\n" for r in records)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                os.write(fd, blob.encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise write_error(self.path, exc) from None


class StepLog:
    """The steps of a script (a benchmark, a check) as JSON lines: one fsynced line appended as each step finishes,
    every value made JSON-native first, so a crash or a time-out keeps every finished step. Without a path the
    records are only kept in memory; with a ``label`` each finished step is also said on stderr."""

    def __init__(self, path: str | Path | None, label: str | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.label = label
        self.records: list[dict[str, Any]] = []
        self._store = None
        if self.path is not None:
            atomic_write(self.path, "")  # a run starts the file anew
            self._store = JsonlStore(self.path)

    def write(self, record: Mapping[str, Any]) -> dict[str, Any]:
        record = to_jsonable(dict(record))
        if self._store is not None:
            self._store.append(record)
        self.records.append(record)
        return record

    def step(self, name: str, **fields: Any) -> dict[str, Any]:
        """Record step ``name`` (its line is ``{"step": name, **fields}``) and return its fields, JSON-native."""
        record = self.write({"step": name, **fields})
        if self.label:
            print(f"[{self.label}] {name} done", file=sys.stderr, flush=True)
        return {k: v for k, v in record.items() if k != "step"}


# ---------------------------------------------------------------- caches across runs


class DiskCache:
    """A key -> (meta, bytes) cache in one sqlite file (embeddings, rewrites); safe to reuse across runs.

    A file that is not a sqlite database (cut off, overwritten) is a one-line error that names it: deleting it
    rebuilds the cache on the next run.
    """

    def __init__(self, path: str | Path) -> None:
        import sqlite3

        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path))
            self._db.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, meta INTEGER, value BLOB)")
            self._db.commit()
        except sqlite3.DatabaseError as exc:
            raise self._broken(exc) from None
        except OSError as exc:
            raise write_error(self.path, exc) from None

    def _broken(self, exc: Exception) -> ArtefactError:
        return ArtefactError(
            f"the cache {self.path} is unusable ({exc}): delete it and rerun to rebuild it"
        )

    def get_many(self, keys: list[str] | tuple[str, ...]) -> dict[str, tuple[int, bytes]]:
        import sqlite3

        found: dict[str, tuple[int, bytes]] = {}
        try:
            for start in range(0, len(keys), 500):
                part = list(keys[start : start + 500])
                marks = ",".join("?" * len(part))
                for row_key, meta, value in self._db.execute(
                    f"SELECT key, meta, value FROM kv WHERE key IN ({marks})", part
                ):
                    found[row_key] = (meta, value)
        except sqlite3.DatabaseError as exc:
            raise self._broken(exc) from None
        return found

    def put_many(self, rows: list[tuple[str, int, bytes]]) -> None:
        import sqlite3

        try:
            self._db.executemany("INSERT OR REPLACE INTO kv (key, meta, value) VALUES (?, ?, ?)", rows)
            self._db.commit()
        except sqlite3.DatabaseError as exc:
            raise self._broken(exc) from None

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM kv").fetchone()[0])

    def close(self) -> None:
        self._db.close()


# ---------------------------------------------------------------- one writer per run folder


class RunLock:
    """An exclusive OS lock on ``RUN/.pancap.lock``: one writing process per run folder.

    A second process gets :class:`RunLockedError` naming the holder's pid. The lock goes with the process, so a
    killed run never leaves a stale lock behind. The holder first removes the temp files a killed writer left
    (:func:`remove_temp_files`).
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / ".pancap.lock"
        self._fd: int | None = None
        self.removed_temp_files = 0

    def __enter__(self) -> RunLock:
        import fcntl

        if int(os.environ.get("RANK", "0")) != 0:  # distributed ranks write their own shards; rank 0 holds it
            return self
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise write_error(self.path, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunLockedError(
                f"{self.path.parent} is being written by another pancap process (pid {holder}); "
                "wait for it to finish or use another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        self.removed_temp_files = remove_temp_files(self.path.parent)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
