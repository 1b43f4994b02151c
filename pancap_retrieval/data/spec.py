"""A dataset as a run names it: :class:`DatasetSpec` (kind, argument, split, limit, Hub revision, ``hf:`` options)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pancap_retrieval.errors import PancapError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetColumns(_Strict):
    """Which columns of a Hugging Face dataset (``hf:`` and its presets) hold the image, the description(s), the id."""

    image: str | None = Field(
        default=None, description="Image feature, image bytes, or a path relative to the set or to `images`"
    )
    text: str | None = Field(
        default=None, description="description column: a string, or a list of strings (several per image)"
    )
    id: str | None = Field(default=None, description="example id column (rows sharing an id are one image)")


class DatasetSpec(_Strict):
    """A dataset as a run names it, parsed once: kind, argument, split, limit and the Hub revision it is pinned to.

    ``name`` is kept in canonical form, ``KIND[:ARG][@REVISION]``, so that passed on as a string it still names the
    same data; ``revision`` comes from ``@REVISION`` in the name or from its own key (both must agree).
    """

    name: str = Field(
        description="KIND or KIND:ARG, e.g. sample, docci:./data/docci, docci:OWNER/MIRROR@REVISION, imagefolder:PATH"
    )
    split: str | None = Field(default=None, description="split to evaluate; each dataset's default when left out")
    limit: int | None = Field(default=None, ge=1, description="evaluate only the first N images of the split")
    revision: str | None = Field(
        default=None, description="branch, tag or commit of a dataset on the Hub (docci:OWNER/MIRROR)"
    )
    config: str | None = Field(default=None, description="configuration (subset) of an hf: dataset, e.g. DOCCI_Test")
    columns: DatasetColumns | None = Field(default=None, description="column names of an hf: dataset")
    images: str | None = Field(
        default=None, description="folder of the images of an hf: dataset that ships descriptions only"
    )
    definition: str | None = Field(
        default=None, description="which definition of a preset that has several (sharegpt4v-1k: first-1k | sam-10k)"
    )

    @model_validator(mode="before")
    @classmethod
    def _parse_name(cls, data: Any) -> Any:
        if isinstance(data, str):
            data = {"name": data}
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            return data  # pydantic reports the missing or mistyped field
        if not isinstance(data.get("revision"), str | None):
            return data
        from pancap_retrieval.data import split_spec

        try:
            kind, arg, revision = split_spec(data["name"], data.get("revision"))
        except PancapError as exc:
            raise ValueError(str(exc)) from None
        name = kind if arg is None else f"{kind}:{arg}"
        from pancap_retrieval.data.hf import check_loader_options

        try:
            check_loader_options(kind, data)
        except PancapError as exc:
            raise ValueError(str(exc)) from None
        return {**data, "name": name + (f"@{revision}" if revision else ""), "revision": revision}

    def loader_options(self) -> dict[str, Any]:
        """The options given for an ``hf:`` dataset or preset (config, columns, images, definition), set ones only."""
        options = {name: getattr(self, name) for name in ("config", "images", "definition")}
        if self.columns is not None:
            options["columns"] = self.columns.model_dump(exclude_none=True)
        return {name: value for name, value in options.items() if value is not None}

    @property
    def kind(self) -> str:
        """The registry name: ``docci`` of ``docci:./data/docci``."""
        return self.name.partition(":")[0]

    @property
    def arg(self) -> str | None:
        """What follows ``KIND:``, without ``@REVISION``; None for a bare kind."""
        _, sep, arg = self.name.partition(":")
        if not sep:
            return None
        return arg.removesuffix(f"@{self.revision}") if self.revision else arg


__all__ = ["DatasetColumns", "DatasetSpec"]
