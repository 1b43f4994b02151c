"""The ``pancap`` command line: parses options and calls the library. Imports no torch at module load."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from pancap_retrieval.data import dataset_spec_help, split_help
from pancap_retrieval.errors import PancapError


class PancapGroup(click.Group):
    """A click group that shows a :class:`PancapError` as one line, never as a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except PancapError as exc:
            raise click.ClickException(_one_line(str(exc))) from None
        except OSError as exc:  # disk full, no permission: what the user can fix, not a traceback
            where = f" ({exc.filename})" if exc.filename else ""
            raise click.ClickException(f"{exc.strerror or exc}{where}") from None


def _one_line(text: str) -> str:
    return " ".join(text.split())


class LazyHelpOption(click.Option):
    """An option whose help is made each time it is read (``help_text()``), so it shows the registries as they are
    when help is shown, a dataset registered after import included."""

    def __init__(self, *args: Any, help_text: Callable[[], str], **kwargs: Any) -> None:
        self.help_text = help_text
        super().__init__(*args, **kwargs)

    @property  # type: ignore[override]
    def help(self) -> str:
        return self.help_text()

    @help.setter
    def help(self, value: str | None) -> None:  # click sets it in __init__; the help is always help_text()
        pass


def _dataset_option(required: bool = True, before: str = "", after: str = "") -> Callable[[Any], Any]:
    """``--dataset`` with the spec help of every dataset registered when the help is shown."""
    return click.option(
        "--dataset", cls=LazyHelpOption, required=required, default=None,
        help_text=lambda: f"{before}{dataset_spec_help()}{after}",
    )


_OVERWRITE = click.option(
    "--overwrite", is_flag=True, help="replace what the run folder holds when it was made with other inputs"
)
_RETRY = click.option(
    "--retry-failed", is_flag=True, help="try again the images whose captioning failed before"
)
_SPLIT = click.option("--split", cls=LazyHelpOption, default=None, help_text=split_help)
_DATASET = _dataset_option()
_DATASET_OPTION = click.option(
    "--dataset-option",
    "dataset_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="option of an hf: dataset or preset (repeatable): config, image, text, id (column names), images (a "
    "folder of images), definition (sharegpt4v-1k: first-1k | sam-10k), revision",
)


def _dataset_spec(dataset: str, options: tuple[str, ...], split: str | None = None, limit: int | None = None):
    """The typed dataset spec of ``--dataset`` with its ``--dataset-option`` values, split and limit."""
    from pancap_retrieval.data.hf import spec_fields
    from pancap_retrieval.suite import DatasetSpec, validated

    fields = spec_fields(dataset, options)
    fields.update({name: value for name, value in (("split", split), ("limit", limit)) if value is not None})
    return validated(DatasetSpec, fields, "--dataset: ")
_CAPTIONS = click.option(
    "--captions",
    "captions",
    multiple=True,
    required=True,
    help="a captions file, or a captioner name whose store is in --out (repeatable)",
)
_LIMIT = click.option("--limit", type=click.IntRange(min=1), default=None, help="only the first N images")
_RUN_OUT = click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="run folder (made if missing)",
)
_SEED = click.option(
    "--seed", type=int, default=0, show_default=True, help="seed of everything random (bootstrap, redraws)"
)


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
    """List what is registered, with a line on each: datasets, captioners, retrievers, embedders, backends,
    redrawers, judges, text-preps."""


def _echo_entries(rows: list[tuple[str, str]]) -> None:
    """``name  description`` lines, names padded to one column."""
    width = max((len(name) for name, _ in rows), default=0) + 2
    for name, description in rows:
        click.echo(f"{name:<{width}}{description}")


def _echo_registry(registry: Any, with_options: bool, extra: tuple[tuple[str, str], ...] = ()) -> None:
    """A registry's entries, a line each; with ``--options`` each entry's options under it (type, default,
    range), read from the signature the registry checks when it builds the entry."""
    if not with_options:
        _echo_entries([*registry.describe(), *extra])
        return
    for name, description in [*registry.describe(), *extra]:
        click.echo(f"{name}  {description}")
        options = registry.options(name) if name in registry else []
        for option in options:
            click.echo(f"    {_one_line(option.line())[:160]}")
        if not options:
            click.echo("    (no options)")


_OPTIONS = click.option(
    "--options", "with_options", is_flag=True,
    help="Also list each entry's options with type, default and range (imports the entries).",
)


@list_group.command("datasets")
@_OPTIONS
def list_datasets(with_options: bool) -> None:
    """Datasets: what each is, its spec and splits."""
    from pancap_retrieval.data import DATASETS, describe_datasets

    _echo_registry(DATASETS, with_options)
    click.echo("")
    rows = describe_datasets()
    width = max((len(info["name"]) for info in rows), default=0) + 2
    for info in rows:
        click.echo(f"{info['name']:<{width}}spec: {info['spec']}; splits: {', '.join(info['splits']) or '-'}")


@list_group.command("captioners")
@_OPTIONS
def list_captioners(with_options: bool) -> None:
    """Captioners by name (weights load only when a captioner is used)."""
    from pancap_retrieval.captioners import CAPTIONERS, PRECOMPUTED, PRECOMPUTED_DESCRIPTION

    _echo_registry(CAPTIONERS, with_options, ((PRECOMPUTED, PRECOMPUTED_DESCRIPTION),))


@list_group.command("retrievers")
@_OPTIONS
def list_retrievers(with_options: bool) -> None:
    """Image-text retrievers (dual encoders) by name, each with its default model and text window."""
    from pancap_retrieval.retrieval.image_text import RETRIEVERS

    _echo_registry(RETRIEVERS, with_options)


@list_group.command("embedders")
@_OPTIONS
def list_embedders(with_options: bool) -> None:
    """Sentence embedders known by name; any sentence-transformers hub id or local folder works too."""
    from pancap_retrieval.retrieval.embedder import EMBEDDERS

    _echo_registry(EMBEDDERS, with_options)


@list_group.command("backends")
@_OPTIONS
def list_backends(with_options: bool) -> None:
    """Search backends."""
    from pancap_retrieval.retrieval.index import SEARCH_BACKENDS

    _echo_registry(SEARCH_BACKENDS, with_options)


@list_group.command("redrawers")
@_OPTIONS
def list_redrawers(with_options: bool) -> None:
    """Redrawers for reconstruction."""
    from reconstruct.redrawers import REDRAWERS

    _echo_registry(REDRAWERS, with_options)


@list_group.command("judges")
@_OPTIONS
def list_judges(with_options: bool) -> None:
    """PancapScore judges."""
    from pancap_retrieval.pancapscore.judges import JUDGES

    _echo_registry(JUDGES, with_options)


@list_group.command("text-preps")
@_OPTIONS
def list_text_preps(with_options: bool) -> None:
    """How captions are prepared before they are embedded (a suite's retrieval.text_prep)."""
    from pancap_retrieval.retrieval.textprep import TEXT_PREPS

    _echo_registry(TEXT_PREPS, with_options)


# ---------------------------------------------------------------- data


@cli.group("data", cls=PancapGroup)
def data_group() -> None:
    """Look at datasets and fetch DOCCI."""


@data_group.command("show")
@click.argument("dataset")
@_SPLIT
@click.option("--limit", type=click.IntRange(min=1), default=5, show_default=True, help="rows to show")
@_DATASET_OPTION
def data_show(dataset: str, split: str | None, limit: int, dataset_options: tuple[str, ...]) -> None:
    """Print the first rows of DATASET (a name or name:ARG) as JSON lines."""
    from pancap_retrieval.data import load_dataset

    rows = load_dataset(_dataset_spec(dataset, dataset_options, split, limit))
    for row in rows.remove_columns("image"):
        click.echo(json.dumps(row, ensure_ascii=False))
    click.echo(f"# {len(rows)} rows of {dataset} split {rows[0]['split'] if len(rows) else split}", err=True)


@data_group.command("download")
@click.argument("dataset", type=click.Choice(["docci"]))
@click.option(
    "--to",
    "to",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="folder to download into (a rerun resumes and checks what is there)",
)
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
    "--dialect",
    type=click.Choice(["auto", "asmv2", "norm", "pixel"]),
    default=None,
    help="box notation: asmv2 (integers in [0, 1000) of the image padded to a centred square), norm (fractions), "
    "pixel, auto (told from each box); default: what a store's manifest declares, else auto. asmv2 and pixel "
    "need --width/--height",
)
@click.option("--width", type=click.IntRange(min=1), default=None, help="image width, for pixel and asmv2 boxes")
@click.option("--height", type=click.IntRange(min=1), default=None, help="image height, for pixel and asmv2 boxes")
def captions_parse(file: Path, dialect: str | None, width: int | None, height: int | None) -> None:
    """Print one JSON line per caption of FILE: entities with boxes as fractions of the image, the stripped text,
    warnings."""
    from pancap_retrieval.captions import read_boxes
    from pancap_retrieval.captions.readers import read_captions
    from pancap_retrieval.captions.store import store_dialect

    if (width is None) != (height is None):
        raise click.UsageError("give both --width and --height, or neither")
    dialect = dialect or (store_dialect(file) if file.is_file() else "auto")
    size = (width, height) if width is not None and height is not None else None
    total_boxes = total_malformed = 0
    for record in read_captions(file):
        if record.caption is None:
            click.echo(
                json.dumps({"example_id": record.example_id, "status": record.status, "error": record.error})
            )
            continue
        fix = f"caption {record.example_id!r}: give the image's --width and --height"
        caption = read_boxes(record.caption, dialect, size, fix=fix)
        total_boxes += caption.n_boxes
        total_malformed += caption.malformed
        click.echo(json.dumps({"example_id": record.example_id, **caption.to_dict()}, ensure_ascii=False))
    click.echo(f"# {total_boxes} boxes, {total_malformed} malformed", err=True)


@captions_group.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--captioner", required=True, help="the name the captions appear under")
@_dataset_option(before="the dataset the captions belong to; ")
@_DATASET_OPTION
@_SPLIT
@_RUN_OUT
@_OVERWRITE
@click.option(
    "--dialect",
    type=click.Choice(["auto", "asmv2", "norm", "pixel"]),
    default=None,
    help="box dialect of the file's captions, kept in the store's manifest for every reader of its boxes "
    "(asmv2: PancapChain; default: auto, each box told by its form)",
)
def captions_import(
    file: Path, captioner: str, dataset: str, dataset_options: tuple[str, ...], split: str | None, out: Path,
    overwrite: bool, dialect: str | None,
) -> None:
    """Import precomputed captions (our JSONL, the paper repo's answer files and JSON lists, a dataset written by
    `pancap export`) into a run's store.

    A store of the same captioner name made from another source is replaced only with --overwrite.
    """
    import shutil
    import tempfile

    from pancap_retrieval.artifacts import RunLock, file_name
    from pancap_retrieval.export import check_system, write_captions_of
    from pancap_retrieval.pipeline import import_captions, load_data, make_run_dir, read_import
    from pancap_retrieval.suite import CaptionerSpec, validated

    validated(CaptionerSpec, {"name": captioner, "file": str(file)})
    spec = _dataset_spec(dataset, dataset_options, split)
    data = load_data(spec)
    with tempfile.TemporaryDirectory() as scratch:
        exported = check_system(file, captioner)  # a dataset written by pancap export: its system of that name
        source = write_captions_of(file, captioner, Path(scratch) / "captions.jsonl") if exported else file
        screened = read_import(source, spec.name, data)  # the whole file is checked before --out is made
        make_run_dir(out)
        with RunLock(out):
            if exported:  # the system's captions are kept in the run folder as the captions file imported
                file = out / "imported" / f"{file_name(captioner)}.jsonl"
                file.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, file)
            report = import_captions(
                file, captioner, spec.name, data, out, overwrite=overwrite, dialect=dialect, screened=screened
            )
    click.echo(json.dumps(report, indent=2))


@cli.command("export")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--to", "to", type=click.Path(file_okay=False, path_type=Path), default=None, help="folder for the dataset"
)
@click.option("--with-images", is_flag=True, help="include each system's redraws as an Image column")
@click.option(
    "--push-to-hub", "push_to_hub", default=None, metavar="OWNER/NAME", help="also push it to this Hub dataset repo"
)
@_OVERWRITE
def export_command(run_dir: Path, to: Path | None, with_images: bool, push_to_hub: str | None, overwrite: bool):
    """Write RUN_DIR as a Hugging Face dataset: parquet shards under data/ and a dataset card (README.md).

    One row per image: example_id, description(s) and per system its caption, boxes, caption->description rank,
    redraw cosine and boxes re-found (and the redraw with --with-images). datasets.load_dataset(DIR) loads it, and
    `pancap captions import DIR --captioner NAME` takes a system's captions back. Nothing is left half-written.
    """
    from pancap_retrieval.export import export_run

    report = export_run(run_dir, to, with_images=with_images, push_to_hub=push_to_hub, overwrite=overwrite)
    click.echo(json.dumps(report, indent=2))


# ---------------------------------------------------------------- caption / convert


@cli.command("caption")
@click.option("--captioner", required=True, help="registry name (`pancap list captioners`)")
@click.option("--model", default=None, help="hub id or local directory of the weights")
@_DATASET
@_DATASET_OPTION
@_SPLIT
@_LIMIT
@_RUN_OUT
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    help="images per batch (default: the captioner's own)",
)
@_RETRY
@_OVERWRITE
@click.option(
    "--option",
    "-o",
    "extra",
    multiple=True,
    metavar="KEY=VALUE",
    help="captioner option, e.g. -o dialect=asmv2 -o score_threshold=0.4 (values read as YAML)",
)
def caption(
    *, captioner, model, dataset, dataset_options, split, limit, out, batch_size, retry_failed, overwrite, extra
) -> None:
    """Caption DATASET into the run folder's caption store (resumable: finished images are skipped).

    The store remembers the captioner's options: a rerun with other options stops and says what differs
    (--overwrite replaces the store).
    """
    from pancap_retrieval.artifacts import RunLock
    from pancap_retrieval.pipeline import captioner_options, load_data, make_run_dir, run_captioner
    from pancap_retrieval.suite import CaptionerSpec, validated

    options = dict(_option_value(item) for item in extra)
    spec = validated(
        CaptionerSpec, {"name": captioner, "model": model, "batch_size": batch_size, "options": options}
    )
    captioner_options(spec.name, spec.captioner_options())
    dataset_spec = _dataset_spec(dataset, dataset_options, split, limit)
    data = load_data(dataset_spec)
    make_run_dir(out)
    with RunLock(out):
        stats, path = run_captioner(
            spec, dataset_spec.name, data, out, retry_failed=retry_failed, overwrite=overwrite
        )
    click.echo(json.dumps({"store": str(path), **stats}, indent=2))
    if stats.get("failed_in_store"):
        click.echo(
            f"{stats['failed_in_store']} images failed (reasons in the store); "
            "rerun with --retry-failed to caption them again",
            err=True,
        )


def _option_value(item: str) -> tuple[str, object]:
    """``KEY=VALUE`` of ``-o`` as (key, the value read as YAML); anything else is one line naming the option."""
    import yaml

    from pancap_retrieval.errors import OptionError

    name, sep, value = item.partition("=")
    if not sep or not name.strip():
        raise OptionError(f"-o {item!r}: an option is KEY=VALUE, e.g. -o score_threshold=0.4")
    try:
        return name.strip(), yaml.safe_load(value)
    except yaml.YAMLError as exc:
        problem = (str(exc).strip().splitlines() or ["not valid YAML"])[0]
        raise OptionError(
            f"-o {item!r}: the value of {name.strip()} is not valid YAML ({problem}); quote it to pass text, "
            f"e.g. -o '{name.strip()}=\"...\"'"
        ) from None


@cli.group("convert", cls=PancapGroup)
def convert_group() -> None:
    """Convert checkpoints into transformers directories."""


@convert_group.command("llava")
@click.argument("src")
@click.option("--lora", default=None, help="a peft LoRA (PancapChain) to merge into SRC")
@click.option("--vision-tower", default=None, help="CLIP vision tower id or dir (default: from SRC's config)")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="folder for the transformers checkpoint",
)
def convert_llava_command(src: str, lora: str | None, vision_tower: str | None, out: Path) -> None:
    """Turn an original-format LLaVA checkpoint (ASMv2, ShareGPT4V, PancapChain) into LlavaForConditionalGeneration."""
    from pancap_retrieval.captioners.convert import convert_llava

    path = convert_llava(src, out, lora=lora, vision_tower=vision_tower)
    click.echo(f"converted checkpoint written to {path}")


# ---------------------------------------------------------------- retrieval and runs


@cli.command("retrieve")
@_DATASET
@_DATASET_OPTION
@_SPLIT
@_LIMIT
@click.option(
    "--captions",
    "captions",
    multiple=True,
    help="a captions file, or a captioner name whose store is in --out (repeatable)",
)
@click.option("--retriever", default=None, help="an image-text retriever (`pancap list retrievers`): a row of its own")
@click.option("--retriever-model", default=None, metavar="ID_OR_DIR", help="hub id or local folder of its weights")
@click.option(
    "-o",
    "extra",
    multiple=True,
    metavar="KEY=VALUE",
    help="retriever option, e.g. -o long_text=chunk -o max_length=64 (values read as YAML)",
)
@click.option(
    "--embedder", default="minilm", show_default=True, help="text embedder (`pancap list embedders`)"
)
@click.option(
    "--long-text",
    type=click.Choice(["chunk", "truncate"]),
    default="chunk",
    show_default=True,
    help="texts over the embedder's window: averaged 256-piece windows (chunk) or the first window only (truncate)",
)
@click.option("--backend", default="faiss", show_default=True, help="search backend (`pancap list backends`)")
@click.option("--text-prep", default="strip", show_default=True, help="strip | keep | rewrite:hf:MODEL")
@_SEED
@_RUN_OUT
@_OVERWRITE
def retrieve(
    *, dataset, dataset_options, split, limit, captions, retriever, retriever_model, extra, embedder, long_text, backend,
    text_prep, seed, out, overwrite,
) -> None:
    """Retrieval against the dataset's descriptions, both ways: captions (text to text) and/or the images through
    an image-text retriever.

    --captions takes a captions file, or the name of a captioner whose store is already in --out (made by
    `pancap caption` or `pancap captions import`). --retriever NAME ranks the descriptions from the images
    themselves (no captions needed); --retriever-model and -o KEY=VALUE are its weights and options.
    """
    from pancap_retrieval.errors import OptionError
    from pancap_retrieval.pipeline import RunOptions, run_suite
    from pancap_retrieval.suite import Suite, validated

    if (retriever_model or extra) and not retriever:
        raise OptionError("--retriever-model and -o are options of --retriever NAME: name the retriever")
    if not captions and not retriever:
        raise OptionError("pancap retrieve needs --captions or --retriever (or both)")
    retrievers = [
        {"name": retriever, "model": retriever_model, "options": dict(_option_value(item) for item in extra)}
    ] if retriever else []

    suite = validated(
        Suite,
        {
            "name": "retrieve",
            "dataset": _dataset_spec(dataset, dataset_options, split, limit).model_dump(exclude_none=True),
            "captioners": [_captions_spec(c) for c in captions],
            "retrievers": retrievers,
            "embedders": [{"name": embedder, "long_text": long_text}],
            "retrieval": {"backend": backend, "text_prep": text_prep},
            "seed": seed,
        },
    )
    _report(run_suite(suite, out, RunOptions(overwrite=overwrite)))


def _captions_spec(value: str) -> dict[str, str]:
    """A captions file (its stem names it), or a captioner name (its store in the run folder is used)."""
    path = Path(value)
    return {"name": path.stem, "file": str(path)} if path.suffix or path.exists() else {"name": value}


@cli.command("run")
@click.argument("suite_file", type=click.Path(path_type=Path))
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), default=None, help="default: runs/NAME"
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="only the first N images")
@_RETRY
@_OVERWRITE
def run(suite_file: Path, out: Path | None, limit: int | None, retry_failed: bool, overwrite: bool) -> None:
    """Run a suite: caption, retrieve, redraw, score.

    The whole suite is checked before any work. Everything already in the run folder that was made from the
    same inputs is reused (a rerun of a finished suite loads no model); a folder made with other options stops
    the run with one line saying what differs (--overwrite replaces it).
    """
    from pancap_retrieval.pipeline import RunOptions, run_suite
    from pancap_retrieval.suite import load_suite

    suite = load_suite(suite_file)
    if limit is not None:
        suite = suite.model_copy(update={"dataset": suite.dataset.model_copy(update={"limit": limit})})
    out = out or Path("runs") / suite.name
    _report(run_suite(suite, out, RunOptions(retry_failed=retry_failed, overwrite=overwrite)), out)


def _report(run_dirs: list[Path], out: Path | None = None) -> None:
    for run_dir in run_dirs:
        click.echo((run_dir / "leaderboard.md").read_text())
        click.echo(f"results: {run_dir / 'results.json'}")
    summary = (out or run_dirs[0]) / "run_summary.json"
    if summary.is_file():
        from pancap_retrieval.pipeline import summary_lines

        click.echo("\n".join(summary_lines(json.loads(summary.read_text()))))


@cli.command("leaderboard")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), default=None, help="also write the table here (md, csv, html, png)"
)
def leaderboard(run_dirs: tuple[Path, ...], out: Path | None) -> None:
    """One table across run folders; a cell a run did not measure stays empty.

    Runs that differ in dataset, split, limit, embedder, text prep, long-text mode or redrawer get columns of
    their own, labelled by what differs. Runs of the same identity share columns: the first by name is shown, with
    the rows of systems only the others have added, and a line says whose rows are shown where two have the same
    system. With --out, pairs.md/.csv compare every two rows scored on the same dataset rows, across runs too."""
    from pancap_retrieval.leaderboard import (
        footnotes,
        markdown,
        read_run,
        shown_runs,
        table,
        write_leaderboard,
    )

    if out is not None:
        write_leaderboard(list(run_dirs), out)
    runs, left_out = shown_runs([read_run(d) for d in run_dirs], [str(d) for d in run_dirs])
    for line in left_out:
        click.echo(f"pancap: {line}", err=True)
    columns, rows = table([results for _, results in runs])
    click.echo(markdown(columns, rows))
    for line in footnotes(rows):
        click.echo(line)


# ---------------------------------------------------------------- reconstruction


@cli.command("reconstruct")
@click.option("--redrawer", default="sketch", show_default=True, help="sketch | gligen | text2image")
@click.option("--model", default=None, help="hub id or local directory of the pipeline")
@_DATASET
@_DATASET_OPTION
@_SPLIT
@_LIMIT
@_CAPTIONS
@_SEED
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=None,
    help="denoising steps (default: gligen 50, text2image 20; sketch has none)",
)
@_RUN_OUT
@_OVERWRITE
def reconstruct_command(
    *, redrawer, model, dataset, dataset_options, split, limit, captions, seed, steps, out, overwrite
) -> None:
    """Redraw each image from its caption and score the redraw against the original.

    Redraws and scores already in --out that were made from the same captions, redrawer, options and seed are
    reused; the rest is redrawn.
    """
    from pancap_retrieval.pipeline import RunOptions, load_data, run_reconstruction
    from pancap_retrieval.suite import CaptionerSpec, ReconstructionSpec, validated

    specs = [validated(CaptionerSpec, _captions_spec(c)) for c in captions]
    spec = validated(ReconstructionSpec, {"redrawer": redrawer, "model": model, "steps": steps})
    dataset_spec = _dataset_spec(dataset, dataset_options, split, limit)
    data = load_data(dataset_spec)
    result = run_reconstruction(data, dataset_spec.name, specs, out, spec, seed, RunOptions(overwrite=overwrite))
    for name, entry in result["captioners"].items():
        click.echo(
            f"{name}: redrawn {entry['redrawn']}, reused {entry['reused']}, "
            f"skipped {sum(entry['skipped'].values())}"
        )
    click.echo(
        f"results: {Path(out) / 'reconstruction.json'}; gallery: {Path(out) / 'gallery' / 'index.html'}"
    )


@cli.command("gallery")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
def gallery(run_dir: Path) -> None:
    """Write RUN_DIR/gallery/: a self-contained paged gallery of originals, layouts, redraws and captions.

    gallery/index.html lists every image with its numbers (retrieval ranks, redraw cosine, boxes re-found), sorts
    by any of them and links to pages of 50 images; thumbnails are made once per source file.
    """
    from pancap_retrieval.artifacts import RunLock
    from pancap_retrieval.stages.gallery import GalleryInputs, write_run_gallery

    with RunLock(run_dir):
        report = write_run_gallery(GalleryInputs(run_dir))
    click.echo(f"gallery written to {report.index}")


# ---------------------------------------------------------------- scores


@cli.group("score", cls=PancapGroup)
def score_group() -> None:
    """Caption-level metrics."""


_CAPTION_FILES = (
    "a captions file in any format pancap reads: our JSONL store ({example_id, caption, ...} per line), the "
    "paper's answer files ({question_id, image, text} per line; one file or a folder of them), a JSON list of "
    "{image_path, model_response|gt_response}, or a plain-text file (one caption, its id the file name). "
    "Images are paired by example_id (an image path's file name without extension)"
)


@score_group.command("pancapscore")
@click.option(
    "--pred", type=click.Path(path_type=Path), default=None,
    help=f"predicted captions: {_CAPTION_FILES}; or give --run and --captioner",
)
@click.option("--run", "run_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="a run folder: score the captions of --captioner in it (instead of --pred)")
@click.option("--captioner", default=None, help="with --run: the captioner whose captions are scored")
@click.option(
    "--ref", required=True,
    help="reference captions: a captions file (same formats), or the shipped SA-Pancap ground truth by name, "
    "sapancap:test or sapancap:val (630 captions in the package; no download)",
)
@click.option(
    "--judge",
    default="rule",
    show_default=True,
    help="rule (offline: tag and location only) | hf:MODEL_ID_OR_DIR (a causal LM extracts and answers items)",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="also write pancapscore.json and pancapscore.md here",
)
@_dataset_option(
    required=False,
    before="the dataset of the images: their sizes (asmv2 and pixel boxes are read on them) and the references' "
    "box dialect (default with --run: the run's dataset); ",
)
@_SPLIT
@click.option(
    "--pred-dialect",
    type=click.Choice(["auto", "asmv2", "norm", "pixel"]),
    default=None,
    help="box dialect of PRED (default: what its store's manifest declares, else auto; PancapChain: asmv2)",
)
@click.option(
    "--ref-dialect",
    type=click.Choice(["auto", "asmv2", "norm", "pixel"]),
    default=None,
    help="box dialect of REF (default: sapancap's norm, the --dataset's, else what its store declares, else auto)",
)
def score_pancapscore_command(
    *, pred: Path | None, run_dir: Path | None, captioner: str | None, ref: str, judge: str, out: Path | None,
    dataset: str | None, split: str | None, pred_dialect: str | None, ref_dialect: str | None,
) -> None:
    """PancapScore (tag, location, attribute, relation, global) of PRED against REF.

    Entities are matched one to one by tag and box (IoU >= 0.5); overall = tag + location + attribute +
    relation + 0.1 x global, times 100. Each side's boxes are read in its own dialect on the image's size (from
    --dataset, or from the image each record's image_path names). Examples: pancap score pancapscore --pred
    preds.jsonl --ref sapancap:test; pancap score pancapscore --run runs/sa --captioner pancapchain --ref
    sapancap:test
    """
    from pancap_retrieval.pancapscore import BoxFrames, markdown_table, score_pancapscore
    from pancap_retrieval.pancapscore.sources import Side, reference_side, run_side

    if (pred is None) == (run_dir is None) or (run_dir is not None) != (captioner is not None):
        raise click.UsageError("give either --pred FILE, or --run DIR with --captioner NAME")
    predicted = run_side(run_dir, captioner) if run_dir is not None else Side(pred)
    reference = reference_side(ref)
    dataset, split = dataset or predicted.dataset, split or (predicted.split if not dataset else None)
    sizes: dict[str, tuple[int, int]] = {}
    if dataset is not None:
        from pancap_retrieval.data import description_dialect
        from pancap_retrieval.pipeline import load_data

        data = load_data(dataset, split, None).select_columns(["example_id", "width", "height"])
        sizes = {i: (w, h) for i, w, h in zip(data["example_id"], data["width"], data["height"]) if w and h}
        ref_dialect = ref_dialect or reference.dialect or description_dialect(dataset)
    frames = BoxFrames(pred_dialect, ref_dialect or reference.dialect, sizes)
    result = score_pancapscore(predicted.path, reference.path, judge=judge, out=out, frames=frames)
    click.echo(markdown_table(result))


def _log_to_stderr() -> None:
    """What the library logs at INFO (stage starts, model loading) goes to stderr as ``pancap: ...`` lines."""
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("pancap: %(message)s"))
    for name in ("pancap_retrieval", "reconstruct"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        logger.propagate = False


def main() -> None:
    _log_to_stderr()
    cli(prog_name="pancap")


if __name__ == "__main__":
    sys.exit(main())
