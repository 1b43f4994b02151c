"""The ``pancap`` command line: parses options and calls the library. Imports no torch at module load."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from pancap_retrieval.errors import PancapError


class PancapGroup(click.Group):
    """A click group that shows a :class:`PancapError` as one line, never as a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except PancapError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=PancapGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pancap")
def cli() -> None:
    """pancap: how much of an image survives in its caption.

    Caption a dataset, then measure the captions by text-to-text retrieval against the dataset's human
    descriptions and by redrawing each image from its caption. Start with `pancap run eval_suites/sample.yaml`.
    """


# ---------------------------------------------------------------- list


@cli.group("list", cls=PancapGroup)
def list_group() -> None:
    """List what is registered: datasets, captioners, embedders, backends, redrawers."""


@list_group.command("datasets")
def list_datasets() -> None:
    """Datasets, their splits and where their data comes from."""
    from pancap_retrieval.data import describe_datasets

    for info in describe_datasets():
        splits = ", ".join(info["splits"]) or "-"
        click.echo(f"{info['name']:<12} {info['spec']:<40} splits: {splits}")
        click.echo(f"{'':<12} {info['description']}")


@list_group.command("captioners")
def list_captioners() -> None:
    """Captioners by name (weights load only when a captioner is used)."""
    from pancap_retrieval.captioners import CAPTIONERS

    for name in CAPTIONERS.names():
        click.echo(f"{name:<14} {CAPTIONERS.target(name)}")
    click.echo(f"{'precomputed':<14} captions imported from a file (`pancap captions import`)")


@list_group.command("embedders")
def list_embedders() -> None:
    """Sentence embedders known by name; any sentence-transformers id or local path works too."""
    from pancap_retrieval.retrieval.embedder import EMBEDDERS

    for name, spec in EMBEDDERS.items():
        click.echo(f"{name:<24} {spec.hub_id}")


@list_group.command("backends")
def list_backends() -> None:
    """Search backends."""
    from pancap_retrieval.retrieval.index import EXACT_BACKENDS, SEARCH_BACKENDS

    for name in SEARCH_BACKENDS.names():
        click.echo(f"{name:<12} {'exact' if name in EXACT_BACKENDS else 'approximate'}")


@list_group.command("redrawers")
def list_redrawers() -> None:
    """Redrawers for reconstruction."""
    from reconstruct.redrawers import REDRAWERS

    for name in REDRAWERS.names():
        click.echo(f"{name:<12} {REDRAWERS.target(name)}")


# ---------------------------------------------------------------- data


@cli.group("data", cls=PancapGroup)
def data_group() -> None:
    """Look at datasets and fetch DOCCI."""


@data_group.command("show")
@click.argument("dataset")
@click.option("--split", default=None, help="split (default: the dataset's own)")
@click.option("--limit", type=click.IntRange(min=1), default=5, show_default=True)
def data_show(dataset: str, split: str | None, limit: int) -> None:
    """Print the first rows of DATASET (a name or name:ARG) as JSON lines."""
    from pancap_retrieval.data import load_dataset

    rows = load_dataset(dataset, split=split, limit=limit)
    for row in rows.remove_columns("image"):
        click.echo(json.dumps(row, ensure_ascii=False))
    click.echo(f"# {len(rows)} rows of {dataset} split {rows[0]['split'] if len(rows) else split}", err=True)


@data_group.command("download")
@click.argument("dataset", type=click.Choice(["docci"]))
@click.option("--to", "to", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--base-url", default=None, help="mirror of the official release files")
def data_download(dataset: str, to: Path, base_url: str | None) -> None:
    """Fetch the official DOCCI release (resumable, checked) and unpack it into the local layout."""
    from pancap_retrieval.data.download import download_docci

    kwargs = {"base_url": base_url} if base_url else {}
    path = download_docci(to, **kwargs)
    click.echo(f"DOCCI is in {path}; use --dataset docci:{path}")


# ---------------------------------------------------------------- captions


@cli.group("captions", cls=PancapGroup)
def captions_group() -> None:
    """Parse caption files and import precomputed captions."""


@captions_group.command("parse")
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--dialect", type=click.Choice(["auto", "asmv2", "norm", "pixel"]), default="auto", show_default=True
)
@click.option("--width", type=int, default=None, help="image width, for pixel and asmv2 boxes")
@click.option("--height", type=int, default=None, help="image height, for pixel and asmv2 boxes")
def captions_parse(file: Path, dialect: str, width: int | None, height: int | None) -> None:
    """Print one JSON line per caption of FILE: entities with normalised boxes, the stripped text, warnings."""
    from pancap_retrieval.captions import parse_caption
    from pancap_retrieval.captions.readers import read_captions

    total_boxes = total_malformed = 0
    for record in read_captions(file):
        if record.caption is None:
            click.echo(
                json.dumps({"example_id": record.example_id, "status": record.status, "error": record.error})
            )
            continue
        caption = parse_caption(record.caption, dialect=dialect, width=width, height=height)
        total_boxes += caption.n_boxes
        total_malformed += caption.malformed
        click.echo(json.dumps({"example_id": record.example_id, **caption.to_dict()}, ensure_ascii=False))
    click.echo(f"# {total_boxes} boxes, {total_malformed} malformed", err=True)


@captions_group.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--captioner", required=True, help="the name the captions appear under")
@click.option("--dataset", required=True, help="dataset spec the captions belong to")
@click.option("--split", default=None)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="run folder")
def captions_import(file: Path, captioner: str, dataset: str, split: str | None, out: Path) -> None:
    """Import precomputed captions (our JSONL, the paper repo's answer files and JSON lists) into a run's store."""
    from pancap_retrieval.pipeline import import_captions

    report = import_captions(file, captioner, dataset, split, out)
    click.echo(json.dumps(report, indent=2))


# ---------------------------------------------------------------- caption / convert


@cli.command("caption")
@click.option("--captioner", required=True, help="registry name (`pancap list captioners`)")
@click.option("--model", default=None, help="hub id or local directory of the weights")
@click.option("--dataset", required=True)
@click.option("--split", default=None)
@click.option("--limit", type=click.IntRange(min=1), default=None)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="run folder")
@click.option("--batch-size", type=click.IntRange(min=1), default=None)
@click.option("--retry-failed", is_flag=True, help="caption again the images that failed before")
@click.option(
    "--option",
    "-o",
    "extra",
    multiple=True,
    metavar="KEY=VALUE",
    help="captioner option, e.g. -o dialect=asmv2 -o score_threshold=0.4 (values read as YAML)",
)
def caption(captioner, model, dataset, split, limit, out, batch_size, retry_failed, extra) -> None:
    """Caption DATASET into the run folder's caption store (resumable: finished images are skipped)."""
    import yaml

    from pancap_retrieval.pipeline import run_captioner

    options = {"model": model} if model else {}
    for item in extra:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--option")
        options[key.strip()] = yaml.safe_load(value)
    stats, path = run_captioner(captioner, options, dataset, split, limit, out, batch_size, retry_failed)
    click.echo(json.dumps({"store": str(path), **stats.to_dict()}, indent=2))


@cli.group("convert", cls=PancapGroup)
def convert_group() -> None:
    """Convert checkpoints into transformers directories."""


@convert_group.command("llava")
@click.argument("src")
@click.option("--lora", default=None, help="a peft LoRA (PancapChain) to merge into SRC")
@click.option("--vision-tower", default=None, help="CLIP vision tower id or dir (default: from SRC's config)")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
def convert_llava_command(src: str, lora: str | None, vision_tower: str | None, out: Path) -> None:
    """Turn an original-format LLaVA checkpoint (ASMv2, ShareGPT4V, PancapChain) into LlavaForConditionalGeneration."""
    from pancap_retrieval.captioners.convert import convert_llava

    path = convert_llava(src, out, lora=lora, vision_tower=vision_tower)
    click.echo(f"converted checkpoint written to {path}")


# ---------------------------------------------------------------- retrieval and runs


@cli.command("retrieve")
@click.option("--dataset", required=True)
@click.option("--split", default=None)
@click.option("--limit", type=click.IntRange(min=1), default=None)
@click.option(
    "--captions",
    "captions",
    multiple=True,
    required=True,
    help="a captions file, or a captioner name whose store is in --out (repeatable)",
)
@click.option("--embedder", default="minilm", show_default=True)
@click.option("--long-text", type=click.Choice(["chunk", "truncate"]), default="chunk", show_default=True)
@click.option("--backend", default="faiss", show_default=True)
@click.option("--text-prep", default="strip", show_default=True, help="strip | keep | rewrite:hf:MODEL")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
def retrieve(dataset, split, limit, captions, embedder, long_text, backend, text_prep, seed, out) -> None:
    """Text-to-text retrieval of captions against the dataset's descriptions, both ways."""
    from pancap_retrieval.pipeline import run_suite
    from pancap_retrieval.suite import Suite

    suite = Suite.model_validate(
        {
            "name": "retrieve",
            "dataset": {"name": dataset, "split": split, "limit": limit},
            "captioners": [_captions_spec(c) for c in captions],
            "embedders": [{"name": embedder, "long_text": long_text}],
            "retrieval": {"backend": backend, "text_prep": text_prep},
            "seed": seed,
        }
    )
    _report(run_suite(suite, out))


def _captions_spec(value: str) -> dict[str, str]:
    path = Path(value)
    return {"name": path.stem, "file": str(path)} if path.suffix or path.exists() else {"name": value}


@cli.command("run")
@click.argument("suite_file", type=click.Path(path_type=Path))
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), default=None, help="default: runs/NAME"
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="only the first N images")
def run(suite_file: Path, out: Path | None, limit: int | None) -> None:
    """Run a suite: caption, retrieve, redraw, score; finished stages are skipped on a rerun."""
    from pancap_retrieval.pipeline import run_suite
    from pancap_retrieval.suite import load_suite

    suite = load_suite(suite_file)
    if limit is not None:
        suite = suite.model_copy(update={"dataset": suite.dataset.model_copy(update={"limit": limit})})
    _report(run_suite(suite, out or Path("runs") / suite.name))


def _report(run_dirs: list[Path]) -> None:
    for run_dir in run_dirs:
        click.echo((run_dir / "leaderboard.md").read_text())
        click.echo(f"results: {run_dir / 'results.json'}")


@cli.command("leaderboard")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), default=None, help="also write md/csv here"
)
def leaderboard(run_dirs: tuple[Path, ...], out: Path | None) -> None:
    """One table across run folders; a cell a run did not measure stays empty."""
    from pancap_retrieval.leaderboard import markdown, table, write_leaderboard
    from pancap_retrieval.results import read_results

    if out is not None:
        write_leaderboard(list(run_dirs), out)
    columns, rows = table([read_results(d) for d in run_dirs])
    click.echo(markdown(columns, rows))


# ---------------------------------------------------------------- reconstruction


@cli.command("reconstruct")
@click.option("--redrawer", default="sketch", show_default=True, help="sketch | gligen | text2image")
@click.option("--model", default=None, help="hub id or local directory of the pipeline")
@click.option("--dataset", required=True)
@click.option("--split", default=None)
@click.option("--limit", type=click.IntRange(min=1), default=None)
@click.option("--captions", "captions", multiple=True, required=True, help="captions file or captioner name")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=None)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
def reconstruct_command(redrawer, model, dataset, split, limit, captions, seed, steps, out) -> None:
    """Redraw each image from its caption and score the redraw against the original."""
    from pancap_retrieval.pipeline import run_reconstruction

    result = run_reconstruction(
        dataset, split, limit, [_captions_spec(c) for c in captions], out, redrawer, model, seed, steps
    )
    click.echo(json.dumps(result, indent=2, default=str)[:4000])


@cli.command("gallery")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
def gallery(run_dir: Path) -> None:
    """Write RUN_DIR/gallery/index.html and a PNG grid: originals, layouts and redraws side by side."""
    from reconstruct.gallery import write_gallery

    click.echo(f"gallery written to {write_gallery(run_dir)}")


# ---------------------------------------------------------------- scores


@cli.group("score", cls=PancapGroup)
def score_group() -> None:
    """Caption-level metrics."""


@score_group.command("pancapscore")
@click.option("--pred", required=True, type=click.Path(path_type=Path), help="predicted captions file")
@click.option("--ref", required=True, type=click.Path(path_type=Path), help="reference captions file")
@click.option("--judge", default="rule", show_default=True, help="rule | hf:MODEL_ID_OR_DIR")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None)
def score_pancapscore_command(pred: Path, ref: Path, judge: str, out: Path | None) -> None:
    """PancapScore (tag, location, attribute, relation, global) of PRED against REF."""
    from pancap_retrieval.pancapscore import markdown_table, score_pancapscore

    result = score_pancapscore(pred, ref, judge=judge, out=out)
    click.echo(markdown_table(result))


def main() -> None:
    cli(prog_name="pancap")


if __name__ == "__main__":
    sys.exit(main())
