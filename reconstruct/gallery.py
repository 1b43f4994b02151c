"""Galleries of a run's reconstructions: a static HTML page and a PNG grid, to look at.

``gallery/index.html``: per image, the original, then per captioner the caption's opening, its layout drawn on the
original (the caption's boxes, are they right?) and the redraw. Image paths are relative, so the run folder can be
moved or served as is. A script on the page writes each image's load state into ``<pre id="image-status">`` once
the page has loaded, which is how the headless-browser test checks that every image shows.
``gallery/grid.png``: the first few images as a matplotlib grid.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from reconstruct.drawing import draw_boxes
from reconstruct.run import RESULTS_FILE, _read_jsonl, safe_name

EXCERPT_CHARS = 320

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 16px; color: #222; }
table { border-collapse: collapse; }
td, th { border: 1px solid #ccc; padding: 6px; vertical-align: top; }
img { max-width: 240px; max-height: 240px; display: block; }
.caption { max-width: 240px; font-size: 12px; color: #444; margin: 4px 0; }
.pair { display: flex; gap: 4px; align-items: flex-start; }
.scores td { font-size: 13px; text-align: right; }
#image-status { display: none; }
"""

_STATUS_SCRIPT = """
window.addEventListener("load", function () {
  var status = Array.prototype.map.call(document.images, function (img) {
    return {src: img.getAttribute("src"), complete: img.complete, naturalWidth: img.naturalWidth};
  });
  var out = document.createElement("pre");
  out.id = "image-status";
  out.textContent = JSON.stringify(status);
  document.body.appendChild(out);
});
"""


def _captioners(run_dir: Path) -> list[tuple[str, Path]]:
    """(display name, folder) of each captioner with redraws, in the order of reconstruction.json."""
    folders = {p.name: p for p in sorted((run_dir / "images").glob("*")) if (p / "layouts.jsonl").is_file()}
    names: list[str] = []
    results_path = run_dir / RESULTS_FILE
    if results_path.is_file():
        names = list(json.loads(results_path.read_text()).get("captioners", {}))
    ordered = [(name, folders.pop(safe_name(name))) for name in names if safe_name(name) in folders]
    return ordered + sorted(folders.items())


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _scores_table(run_dir: Path) -> str:
    path = run_dir / RESULTS_FILE
    if not path.is_file():
        return ""
    results = json.loads(path.read_text())
    rows = []
    for name, entry in results.get("captioners", {}).items():
        scores = entry.get("scores", {})
        adherence = scores.get("adherence", {})
        rows.append(
            "<tr>"
            f"<th>{html.escape(name)}</th>"
            f"<td>{_fmt(scores.get('n_pairs'))}</td>"
            f"<td>{_fmt(scores.get('cosine', {}).get('mean'))}</td>"
            f"<td>{_fmt(scores.get('retrieval', {}).get('R@1'))}</td>"
            f"<td>{_fmt(scores.get('shuffled', {}).get('R@1'))}</td>"
            f"<td>{_fmt(scores.get('fid', {}).get('value'), 1)}</td>"
            f"<td>{_fmt(adherence.get('redraw', {}).get('success_rate'))}</td>"
            f"<td>{_fmt(adherence.get('original', {}).get('success_rate'))}</td>"
            "</tr>"
        )
    head = (
        "<tr><th>captioner</th><th>pairs</th><th>cosine</th><th>R@1</th><th>R@1 shuffled</th><th>FID</th>"
        "<th>boxes found (redraw)</th><th>boxes found (original)</th></tr>"
    )
    redrawer = html.escape(str(results.get("redrawer", {}).get("name", "?")))
    return f"<p>Redrawer: <b>{redrawer}</b></p><table class='scores'>{head}{''.join(rows)}</table>"


def write_gallery(run_dir: str | Path, *, max_images: int = 100, grid_images: int = 6) -> Path:
    """Write ``gallery/index.html`` (and ``gallery/grid.png``) for the reconstructions of ``run_dir``."""
    from PIL import Image

    run_dir = Path(run_dir)
    captioners = _captioners(run_dir)
    if not captioners:
        raise FileNotFoundError(f"no redraws under {run_dir / 'images'}: run the reconstruction first")
    gallery = run_dir / "gallery"
    gallery.mkdir(parents=True, exist_ok=True)
    entries = {name: _read_jsonl(folder / "layouts.jsonl") for name, folder in captioners}
    ids = sorted({i for per in entries.values() for i in per})[:max_images]

    rows = []
    grid_rows: list[list[tuple[str, Path | None]]] = []
    for example_id in ids:
        safe = safe_name(example_id)
        original_path = run_dir / "originals" / f"{safe}.png"
        cells = [f"<th>{html.escape(example_id)}</th>"]
        if original_path.is_file():
            cells.append(
                f"<td><img src='../originals/{safe}.png' alt='original {html.escape(example_id)}'></td>"
            )
        else:
            cells.append("<td>(no original)</td>")
        grid_row: list[tuple[str, Path | None]] = [
            ("original", original_path if original_path.is_file() else None)
        ]
        for name, folder in captioners:
            entry = entries[name].get(example_id)
            redraw_path = folder / entry["image"] if entry else None
            if entry is None or redraw_path is None or not redraw_path.is_file():
                cells.append("<td>(not redrawn)</td>")
                grid_row += [(f"{name} layout", None), (f"{name} redraw", None)]
                continue
            layout = entry["layout"]
            overlay_rel = f"overlays/{folder.name}/{safe}.png"
            overlay_path = gallery / overlay_rel
            if original_path.is_file():
                overlay_path.parent.mkdir(parents=True, exist_ok=True)
                with Image.open(original_path) as image:
                    draw_boxes(image.convert("RGB"), layout["source_boxes"], layout["phrases"]).save(
                        overlay_path
                    )
            text = " ".join(layout.get("text", "").split())
            excerpt = text[:EXCERPT_CHARS] + ("…" if len(text) > EXCERPT_CHARS else "")
            overlay_html = (
                f"<img src='{overlay_rel}' alt='layout'>"
                if overlay_path.is_file()
                else "<span>(no original)</span>"
            )
            cells.append(
                "<td>"
                f"<div class='caption'>{html.escape(excerpt)}</div>"
                f"<div class='caption'>{len(layout['boxes'])} boxes · seed {entry['seed']}</div>"
                f"<div class='pair'>{overlay_html}"
                f"<img src='../images/{folder.name}/{html.escape(entry['image'])}' alt='redraw'></div>"
                "</td>"
            )
            grid_row += [
                (f"{name} layout", overlay_path if overlay_path.is_file() else None),
                (f"{name} redraw", redraw_path),
            ]
        rows.append(f"<tr>{''.join(cells)}</tr>")
        grid_rows.append(grid_row)

    head = "<tr><th>image</th><th>original</th>" + "".join(
        f"<th>{html.escape(name)}: layout on the original · redraw</th>" for name, _ in captioners
    )
    page = (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>Reconstructions: {html.escape(run_dir.name)}</title><style>{_STYLE}</style>"
        f"<script>{_STATUS_SCRIPT}</script></head><body>"
        f"<h1>Reconstructions: {html.escape(run_dir.name)}</h1>{_scores_table(run_dir)}"
        f"<p>{len(ids)} images</p><table>{head}</tr>{''.join(rows)}</table></body></html>\n"
    )
    index = gallery / "index.html"
    index.write_text(page, encoding="utf-8")
    _grid(grid_rows[:grid_images], gallery / "grid.png")
    return index


def _grid(rows: list[list[tuple[str, Path | None]]], path: Path) -> None:
    """A matplotlib grid: one row per image, one column per picture (original, then layout/redraw pairs)."""
    if not rows:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    n_cols = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(2.4 * n_cols, 2.4 * len(rows)), squeeze=False)
    for r, row in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.axis("off")
            if c >= len(row):
                continue
            title, picture = row[c]
            if picture is not None:
                with Image.open(picture) as image:
                    ax.imshow(image.convert("RGB"))
            if r == 0:
                ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
