"""The gallery in a real headless Chromium, driven over the DevTools protocol: 2,000 images, lazy loading, no broken
image, arrow keys between pages, sorting the index, four captioners on a laptop screen."""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import re
import select
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconstruct.gallery import write_gallery

N_IMAGES = 2000


class DevTools:
    """Headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: the browser
    reads commands on its fd 3 and writes replies and events on its fd 4, each message ending with a NUL)."""

    def __init__(self, chromium: str, profile: str) -> None:
        commands_read, self._commands = os.pipe()
        self._replies, replies_write = os.pipe()

        def child_pipes() -> None:  # in the child, before exec: the two pipe ends as fds 3 and 4
            read_end = fcntl.fcntl(commands_read, fcntl.F_DUPFD, 10)
            write_end = fcntl.fcntl(replies_write, fcntl.F_DUPFD, 10)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}", "--remote-debugging-pipe"]  # fmt: skip
        self.process = subprocess.Popen(
            [chromium, *flags, "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=False,
            preexec_fn=child_pipes,
        )
        os.close(commands_read)
        os.close(replies_write)
        self._buffer = b""
        self._events: list[dict[str, Any]] = []
        self._next_id = 0
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Page.enable", session=self.session)

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._replies], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError("no message from chromium in time")
            chunk = os.read(self._replies, 1 << 20)
            if not chunk:
                raise RuntimeError(f"chromium closed its pipe (exit code {self.process.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, session: str | None = None, timeout: float = 30, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self._events.append(reply)

    def wait_for(self, event: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            for i, seen in enumerate(self._events):
                if seen["method"] == event:
                    del self._events[: i + 1]
                    return
            message = self._read(deadline)
            if "method" in message:
                self._events.append(message)

    def open(self, url: str, width: int = 1366, height: int = 800) -> None:
        self.call("Emulation.setDeviceMetricsOverride", session=self.session, width=width, height=height,
                  deviceScaleFactor=1, mobile=False)  # fmt: skip
        self._events.clear()
        self.call("Page.navigate", session=self.session, url=url)
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str, timeout: float = 30) -> Any:
        result = self.call("Runtime.evaluate", session=self.session, timeout=timeout, expression=expression,
                           returnByValue=True, awaitPromise=True)  # fmt: skip
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:60]}...: {result['exceptionDetails']}")
        return result["result"].get("value")

    def press(self, key: str, code: int) -> None:
        """A real key press (keyDown + keyUp), as the keyboard sends it to the focused page."""
        for kind in ("keyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", session=self.session, type=kind, key=key, code=key,
                      windowsVirtualKeyCode=code, nativeVirtualKeyCode=code)  # fmt: skip

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.call("Browser.close", timeout=10)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._commands)
        os.close(self._replies)


@pytest.fixture(scope="module")
def browser(chromium) -> Iterator[DevTools]:
    with tempfile.TemporaryDirectory() as profile:
        tools = DevTools(chromium, profile)
        try:
            yield tools
        finally:
            tools.close()


def _png(colour: tuple[int, int, int], size: tuple[int, int]) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def synthetic_run(run: Path, n: int, captioners: tuple[str, ...], ranked: tuple[str, ...]) -> list[str]:
    """A run folder as the reconstruction and retrieval stages leave it, with tiny images: originals, redraws and
    layouts per captioner (``reference`` without boxes), per-image scores, and retrieval ranks for ``ranked``."""
    blobs = [_png(((37 * i) % 256, (91 * i) % 256, (53 * i) % 256), (30 + i % 7, 20 + i % 5)) for i in range(64)]
    ids = [f"img_{i:05d}" for i in range(n)]
    (run / "originals").mkdir(parents=True)
    for i, example_id in enumerate(ids):
        (run / "originals" / f"{example_id}.png").write_bytes(blobs[i % 64])
    reconstruction: dict[str, Any] = {"redrawer": {"name": "sketch"}, "captioners": {}}
    for c, name in enumerate(captioners):
        folder = run / "images" / name
        folder.mkdir(parents=True)
        boxes = [] if name == "reference" else [[0.1, 0.1, 0.6, 0.9], [0.5, 0.2, 0.95, 0.6]]
        phrases = [] if name == "reference" else ["a red car", "a tree"]
        lines = []
        for i, example_id in enumerate(ids):
            (folder / f"{example_id}.png").write_bytes(blobs[(i + c) % 64])
            text = f"A red car parks under a tree in picture {example_id}, seen by {name}."
            layout = {"example_id": example_id, "phrases": phrases, "source_boxes": boxes, "text": text}
            lines.append(json.dumps({"example_id": example_id, "image": f"{example_id}.png", "layout": layout}))
        (folder / "layouts.jsonl").write_text("\n".join(lines) + "\n")
        per_image = {e: {"cosine": 0.5 + (i % 7) / 20, "boxes": len(boxes), "boxes_refound": None} for i, e in enumerate(ids)}
        reconstruction["captioners"][name] = {"per_image": per_image}
    (run / "reconstruction.json").write_text(json.dumps(reconstruction))
    (run / "retrieval").mkdir()
    for name in ranked:
        ranks = {d: {e: 1 + (i * 7 + k) % n for i, e in enumerate(ids)} for k, d in enumerate(("c2d", "d2c"))}
        (run / "retrieval" / f"{name}.ranks.json").write_text(json.dumps(ranks))
    return ids


def _sources(page: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', page)


LOAD_EVERY_IMAGE = """
(async () => {
  const images = Array.from(document.images);
  const before = images.map(image => image.complete && image.naturalWidth > 0);
  for (const image of images) {
    image.scrollIntoView();
    await new Promise(resolve => requestAnimationFrame(resolve));
  }
  const settle = image => image.complete ? null : new Promise(resolve => {
    image.addEventListener("load", resolve); image.addEventListener("error", resolve);
  });
  await Promise.race([Promise.all(images.map(settle)), new Promise(resolve => setTimeout(resolve, 15000))]);
  window.scrollTo(0, 0);
  return {before, after: images.map(image => ({src: image.getAttribute("src"), lazy: image.loading,
                                               ok: image.complete && image.naturalWidth > 0}))};
})()
"""


@pytest.mark.slow
def test_two_thousand_images_load_and_the_arrow_keys_turn_the_pages(tmp_path, browser):
    ids = synthetic_run(tmp_path, N_IMAGES, ("reference", "detector"), ranked=("reference", "detector"))
    index = write_gallery(tmp_path, progress=False)
    gallery = index.parent
    made = {path: path.stat().st_mtime_ns for path in gallery.rglob("*") if path.is_file()}
    write_gallery(tmp_path, progress=False)
    assert made == {path: path.stat().st_mtime_ns for path in gallery.rglob("*") if path.is_file()}  # nothing redone
    pages = sorted(gallery.glob("page-*.html"), key=lambda p: int(p.stem.split("-")[1]))
    assert len(pages) == N_IMAGES // 50
    shown = set()
    for page in pages:  # every page of every image: each picture it shows is a file inside gallery/
        sources = _sources(page.read_text())
        assert len(sources) == 50 * 4  # original; reference: redraw (no layout panel); detector: layout, redraw
        assert all((gallery / src).is_file() for src in sources)
        shown.update(sources)
    assert len(shown) == 3 * N_IMAGES  # the layout panels show the originals' thumbnails again

    browser.open(pages[0].as_uri())
    status = browser.evaluate(LOAD_EVERY_IMAGE, timeout=60)
    assert len(status["after"]) == 200 and all(image["lazy"] == "lazy" for image in status["after"])
    assert not status["before"][-1], "the last image loaded before it was scrolled to: not lazy"
    broken = [image["src"] for image in status["after"] if not image["ok"]]
    assert not broken, f"images that did not load: {broken[:5]}"
    assert browser.evaluate("document.querySelectorAll('article.card').length") == 50

    browser.press("ArrowRight", 39)
    browser.wait_for("Page.loadEventFired")
    assert browser.evaluate("location.pathname").endswith("/page-2.html")
    assert browser.evaluate("document.querySelector('article.card h2').textContent") == ids[50]
    browser.press("ArrowLeft", 37)
    browser.wait_for("Page.loadEventFired")
    assert browser.evaluate("location.pathname").endswith("/page-1.html")

    browser.open(index.as_uri())
    assert browser.evaluate("document.querySelectorAll('#images tbody tr').length") == N_IMAGES
    # the detector's c2d rank is column 6 (image, page, then 4 numbers per captioner); first click: worst first
    browser.evaluate("document.querySelector('#images button[data-column=\"6\"]').click()")
    worst = browser.evaluate("document.querySelector('#images tbody tr').textContent")
    assert worst.startswith(ids[next(i for i in range(N_IMAGES) if 1 + (i * 7) % N_IMAGES == N_IMAGES)])
    assert browser.evaluate("location.hash") == "#sort=images.6.desc"
    link = browser.evaluate("document.querySelector('#images tbody tr a').getAttribute('href')")
    assert re.fullmatch(r"page-\d+\.html#img-img_\d{5}", link)


def test_four_captioners_fit_a_laptop_screen(tmp_path, browser):
    synthetic_run(tmp_path, 6, ("reference", "detector", "alpha", "beta"), ranked=("detector",))
    page = write_gallery(tmp_path, progress=False).with_name("page-1.html")
    layout = """(() => {
      const tops = Array.from(document.querySelectorAll('article.card')[0].querySelectorAll('.captioner'))
        .map(section => section.getBoundingClientRect().top);
      return {wide: document.documentElement.scrollWidth, window: window.innerWidth, rows: new Set(tops).size};
    })()"""
    browser.open(page.as_uri(), width=1366, height=800)
    laptop = browser.evaluate(layout)
    assert laptop["wide"] <= laptop["window"] and laptop["rows"] == 1  # side by side, no sideways scrolling
    browser.open(page.as_uri(), width=800, height=800)
    narrow = browser.evaluate(layout)
    assert narrow["wide"] <= narrow["window"] and narrow["rows"] > 1  # wrapped inside the page instead
