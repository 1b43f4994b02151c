"""HTML pages from jinja2 templates kept as package data (``PACKAGE/templates/``), always autoescaped.

The leaderboard page and the gallery share one sortable-table script (``pancap_retrieval/templates/sortable.js``),
inlined so that each page works on its own, from a file, without a server.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jinja2


@cache
def environment(packages: tuple[str, ...]) -> jinja2.Environment:
    """One environment reading ``templates/`` of each package in turn; undefined names are errors."""
    import jinja2

    loader = jinja2.ChoiceLoader([jinja2.PackageLoader(package, "templates") for package in packages])
    return jinja2.Environment(
        loader=loader,
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(name: str, packages: tuple[str, ...], /, **context: Any) -> str:
    """Render template ``name``, looked up in ``packages``' ``templates/`` folders."""
    return environment(packages).get_template(name).render(**context)
