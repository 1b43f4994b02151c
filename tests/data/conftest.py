"""Tiny real fixtures for the data tests: three photos from scikit-image, a DOCCI-layout release, an HTTP server."""

from __future__ import annotations

import io
import json
import re
import struct
import tarfile
import threading
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

# example_id, split, skimage.data accessor, description (shortened DOCCI-style text)
DOCCI_ROWS = [
    ("test_00002", "test", "chelsea", "A close-up of a tabby cat with green eyes."),
    ("test_00001", "test", "coffee", "A red espresso cup on a saucer on a wooden table."),
    ("train_00000", "train", "astronaut", "An astronaut in an orange suit in front of a flag."),
]


def jpeg_bytes(name: str, size: tuple[int, int] | None = None) -> bytes:
    """A real photo from ``skimage.data`` as JPEG bytes, optionally resized (width, height)."""
    import skimage.data
    from PIL import Image

    image = Image.fromarray(getattr(skimage.data, name)())
    if size is not None:
        image = image.resize(size)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def huge_png(path: Path, width: int, height: int) -> Path:
    """A real, valid 1-bit PNG of ``width`` x ``height`` (all black), written row by row: 20000 x 20000 is ~50 KB."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    row = b"\x00" + bytes((width + 7) // 8)  # filter type 0, then the packed bits of one row
    packer = zlib.compressobj(9)
    pixels = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # bit depth 1, greyscale
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )
    return path


@pytest.fixture(scope="session")
def make_huge_png() -> Callable[[Path, int, int], Path]:
    """:func:`huge_png`, for the tests."""
    return huge_png


@pytest.fixture(scope="session")
def photos() -> dict[str, bytes]:
    """chelsea, coffee and astronaut as small JPEGs: 90x60, 60x40 and 50x50 pixels."""
    return {
        "chelsea": jpeg_bytes("chelsea", (90, 60)),
        "coffee": jpeg_bytes("coffee", (60, 40)),
        "astronaut": jpeg_bytes("astronaut", (50, 50)),
    }


def description_lines(rows: list[tuple[str, str, str, str]] = DOCCI_ROWS) -> str:
    return "".join(
        json.dumps({"example_id": eid, "split": split, "image_file": f"{eid}.jpg", "description": text})
        + "\n"
        for eid, split, _, text in rows
    )


@pytest.fixture
def docci_dir(tmp_path: Path, photos: dict[str, bytes]) -> Path:
    """The official DOCCI local layout: descriptions jsonlines plus images/<example_id>.jpg."""
    root = tmp_path / "docci"
    (root / "images").mkdir(parents=True)
    (root / "docci_descriptions.jsonlines").write_text(description_lines(), encoding="utf-8")
    for eid, _, photo, _ in DOCCI_ROWS:
        (root / "images" / f"{eid}.jpg").write_bytes(photos[photo])
    return root


@pytest.fixture
def release_files(tmp_path: Path, photos: dict[str, bytes]) -> Path:
    """The three files of the DOCCI release as served upstream, images packed as images/<file> in a tar.gz."""
    root = tmp_path / "served"
    root.mkdir()
    (root / "docci_descriptions.jsonlines").write_text(description_lines(), encoding="utf-8")
    metadata = "".join(
        json.dumps({"example_id": eid, "photo": photo}) + "\n" for eid, _, photo, _ in DOCCI_ROWS
    )
    (root / "docci_metadata.jsonlines").write_text(metadata, encoding="utf-8")
    with tarfile.open(root / "docci_images.tar.gz", "w:gz") as tar:
        folder = tarfile.TarInfo("images")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        for eid, _, photo, _ in DOCCI_ROWS:
            member = tarfile.TarInfo(f"images/{eid}.jpg")
            member.size = len(photos[photo])
            tar.addfile(member, io.BytesIO(photos[photo]))
    return root


class Served:
    """A running file server: its base URL, the requests it saw, and a switch to cut bodies short."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Range header)
        self.truncate_after: dict[str, int] = {}  # file name -> bytes actually sent of a full-length reply
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.running = False

    def start(self) -> None:
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        self.running = True

    def stop(self) -> None:
        if self.running:
            self.server.shutdown()
            self.server.server_close()
            self.running = False


def _handler(served: Served) -> type[BaseHTTPRequestHandler]:
    class RangeHandler(BaseHTTPRequestHandler):
        """Serves files from ``served.root`` with single-range support (``bytes=N-`` and ``bytes=N-M``)."""

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

        def _serve(self, body: bool) -> None:
            name = unquote(self.path.split("?", 1)[0].lstrip("/"))
            served.requests.append((self.command, name, self.headers.get("Range")))
            path = served.root / name
            if "/" in name or not path.is_file():
                self.send_error(404)
                return
            data = path.read_bytes()
            start, end, status = 0, len(data) - 1, 200
            asked = self.headers.get("Range")
            if asked:
                match = re.fullmatch(r"bytes=(\d+)-(\d*)", asked.strip())
                start = int(match.group(1))
                end = min(int(match.group(2)), len(data) - 1) if match.group(2) else len(data) - 1
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
            chunk = data[start : end + 1]
            self.send_response(status)
            self.send_header("Content-Length", str(len(chunk)))
            self.send_header("Accept-Ranges", "bytes")
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            self.end_headers()
            if not body:
                return
            cut = served.truncate_after.get(name)
            if cut is not None:
                self.wfile.write(chunk[:cut])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(chunk)

    return RangeHandler


@pytest.fixture
def serve() -> Iterator[Callable[[Path], Served]]:
    """Start a Range-capable HTTP server on 127.0.0.1 for a folder; stopped at the end of the test."""
    running: list[Served] = []

    def start(root: Path) -> Served:
        served = Served(root)
        served.start()
        running.append(served)
        return served

    yield start
    for served in running:
        served.stop()
