"""Registries by name: one pattern for datasets, captioners, embedders, search backends, redrawers, judges and text preps.

An entry is a string import path (imported on first use, so listing never imports torch) and a one-line
description (what ``pancap list KIND`` prints). :meth:`Registry.build` checks the options against the entry's
signature before anything is built: an unknown option is a :class:`RegistryError` naming the known ones, a value of
the wrong type or out of range an :class:`OptionError`, each one line. Ranges come from the signature's types
(:data:`Fraction`, :data:`Count`, :data:`NonNegative`, any ``Annotated[..., Field(ge=..., le=...)]``, a ``Literal``).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import Field

from pancap_retrieval.errors import OptionError, PancapError, RegistryError

# Options that count things, whatever the entry: zero or less is refused before anything is built.
AT_LEAST_ONE = ("batch_size", "steps", "max_new_tokens", "canvas_size", "max_prompt_tokens", "limit")
# Types with a range, for the signatures of entries: :func:`check_options` refuses a value outside it up front.
Fraction = Annotated[float, Field(ge=0, le=1)]
Count = Annotated[int, Field(ge=0)]
NonNegative = Annotated[float, Field(ge=0)]


@dataclass(frozen=True)
class Entry:
    """A registered thing: where it lives (``"module.path:attribute"``), what it is in one line, and the options
    the entry itself passes (an embedder's model name), which a user cannot override."""

    target: str
    description: str
    fixed: dict[str, Any] = field(default_factory=dict)
    loaded: Any = field(default=None, compare=False)  # the object itself, for one registered at run time

    @classmethod
    def of(cls, thing: Any, description: str | None = None) -> Entry:
        """The entry of a class or function registered as itself (one defined in a test or a notebook).

        >>> Entry.of(Entry).target, Entry.of(Entry).description.split(":")[0]
        ('pancap_retrieval.registry:Entry', 'A registered thing')
        """
        doc = (inspect.getdoc(thing) or "").strip().splitlines()
        target = f"{getattr(thing, '__module__', '?')}:{getattr(thing, '__qualname__', repr(thing))}"
        return cls(target, description or (doc[0] if doc else target), loaded=thing)


@dataclass(frozen=True)
class OptionInfo:
    """One option of a registered entry as ``pancap list KIND --options`` shows it: name, type, default, range.

    >>> import inspect, typing
    >>> def f(steps: int = 50, dialect: Literal["a", "b"] = "a", model: str | None = None): ...
    >>> hints = typing.get_type_hints(f)
    >>> [OptionInfo.of(p, hints[p.name]).line() for p in inspect.signature(f).parameters.values()]
    ['steps: int = 50 (>= 1)', "dialect: 'a' | 'b' = 'a'", 'model: str | None = None']
    """

    name: str
    type: str
    default: str
    range: str

    @classmethod
    def of(cls, parameter: inspect.Parameter, annotation: Any) -> OptionInfo:
        empty = inspect.Parameter.empty
        default = "(required)" if parameter.default is empty else repr(parameter.default)
        bounds = [*_bounds(annotation)]
        if parameter.name in AT_LEAST_ONE and not bounds:
            bounds = [">= 1"]
        return cls(parameter.name, _type_name(annotation), default, ", ".join(bounds))

    def line(self) -> str:
        text = f"{self.name}: {self.type} = {self.default}" if self.type else f"{self.name} = {self.default}"
        return text + (f" ({self.range})" if self.range else "")


def _type_name(annotation: Any) -> str:
    """An annotation as a person reads it: ``int``, ``str | None``, ``'a' | 'b'`` for a Literal."""
    if annotation is None or annotation is inspect.Parameter.empty:
        return ""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _type_name(args[0])
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " | ".join("None" if a is type(None) else _type_name(a) for a in args)
    if isinstance(annotation, type) and not args:
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _bounds(annotation: Any) -> Iterator[str]:
    """The numeric bounds an ``Annotated[..., Field(ge=..)]`` (or annotated-types ``Ge``...) puts on an option."""
    if get_origin(annotation) in (Union, types.UnionType):
        for arg in get_args(annotation):
            yield from _bounds(arg)
        return
    if get_origin(annotation) is not Annotated:
        return
    for meta in get_args(annotation)[1:]:
        for item in [meta, *getattr(meta, "metadata", [])]:
            for attribute, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
                value = getattr(item, attribute, None)
                if value is not None and not callable(value):
                    yield f"{sign} {value}"


class Registry:
    """Short names -> :class:`Entry`, imported on first use.

    ``bind=True`` is for entries that are functions called later with data (search backends): :meth:`build` then
    returns the function with the options bound instead of calling it. A catch-all ``**kwargs`` accepts any option
    (the entry checks them itself); ``**_`` only swallows what the caller passes to every entry, not user options.

    >>> r = Registry("thing", {"isclose": Entry("math:isclose", "two numbers within a tolerance")}, bind=True)
    >>> r.build("isclose", rel_tol=0.5)(1.0, 1.4)
    True
    >>> r.describe()
    [('isclose', 'two numbers within a tolerance')]
    >>> r.get("iszero")
    Traceback (most recent call last):
    ...
    pancap_retrieval.errors.RegistryError: unknown thing 'iszero'; known: isclose
    >>> r.build("isclose", tol=0.5)
    Traceback (most recent call last):
    ...
    pancap_retrieval.errors.RegistryError: thing 'isclose' has no option tol; its options: rel_tol, abs_tol
    """

    def __init__(self, kind: str, entries: dict[str, Entry] | None = None, *, bind: bool = False) -> None:
        self.kind = kind
        self.bind = bind
        self._entries: dict[str, Entry] = dict(entries or {})

    def register(self, name: str, entry: Entry | str | Any, description: str | None = None) -> Entry:
        """Add (or replace) entry ``name``: an :class:`Entry`, a ``"module.path:attribute"`` target, or the class
        or function itself; the description defaults to the first line of its docstring. Returns the entry.

        >>> r = Registry("thing")
        >>> r.register("sqrt", "math:sqrt", "a square root").target
        'math:sqrt'
        >>> def half(x: float = 1.0):
        ...     'Half of x.'
        ...     return x / 2
        >>> r.register("half", half).description, r.build("half", x=3.0)
        ('Half of x.', 1.5)
        >>> r.unregister("half"); r.names()
        ['sqrt']
        """
        if isinstance(entry, str):
            entry = Entry(entry, description or entry)
        elif not isinstance(entry, Entry):
            entry = Entry.of(entry, description)
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        """Remove entry ``name`` (one registered at run time); an unknown name is a :class:`RegistryError`."""
        self.entry(name)
        del self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def entry(self, name: str) -> Entry:
        """The entry registered as ``name``; an unknown name is a :class:`RegistryError` listing the known ones."""
        if name not in self._entries:
            raise RegistryError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
        return self._entries[name]

    def target(self, name: str) -> str:
        return self.entry(name).target

    def description(self, name: str) -> str:
        return self.entry(name).description

    def describe(self) -> list[tuple[str, str]]:
        """(name, one-line description) of every entry, sorted by name; imports nothing."""
        return [(name, self._entries[name].description) for name in self.names()]

    def options(self, name: str) -> list[OptionInfo]:
        """The options a user may set on entry ``name``, read from the same signature :meth:`build` checks
        (imports the entry). With ``bind=True`` the data arguments are left out, as in :meth:`build`."""
        entry = self.entry(name)
        factory = self.get(name)
        parameters = option_parameters(factory, entry.fixed)
        hints = _type_hints(factory)
        return [
            OptionInfo.of(p, hints.get(n))
            for n, p in parameters.items()
            if not self.bind or p.default is not inspect.Parameter.empty or p.kind is inspect.Parameter.KEYWORD_ONLY
        ]

    def get(self, name: str) -> Any:
        """The registered object itself (a class or a function), imported now."""
        entry = self.entry(name)
        if entry.loaded is not None:
            return entry.loaded
        module_name, _, attribute = entry.target.partition(":")
        return getattr(importlib.import_module(module_name), attribute)

    def build(self, name: str, /, **options: Any) -> Any:
        """The entry built with ``options`` (called, or bound with ``bind=True``), after checking every option."""
        entry = self.entry(name)
        factory = self.get(name)
        label = f"{self.kind} {name!r}"
        checked = check_options(factory, options, label, fixed=entry.fixed, bind=self.bind)
        if self.bind:
            return functools.partial(factory, **entry.fixed, **checked)
        try:
            return factory(**entry.fixed, **checked)
        except PancapError:
            raise
        except ValueError as exc:  # a value the entry itself refuses (e.g. an unknown dialect)
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise OptionError(f"{label}: {first}") from None


def option_parameters(factory: Callable[..., Any], fixed: dict[str, Any] | None = None) -> dict[str, Any]:
    """The parameters a user may set on ``factory``, by name (``self``, ``*args`` and ``fixed`` ones left out)."""
    usable = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {
        name: p
        for name, p in inspect.signature(factory).parameters.items()
        if p.kind in usable and name not in (fixed or {})
    }


def check_options(
    factory: Callable[..., Any],
    options: dict[str, Any],
    label: str,
    *,
    fixed: dict[str, Any] | None = None,
    bind: bool = False,
) -> dict[str, Any]:
    """``options`` validated against ``factory``'s signature and type hints (values converted as pydantic does).

    With ``bind``, positional parameters without a default are the data passed later, not options.
    """
    parameters = option_parameters(factory, fixed)
    if bind:
        parameters = {
            n: p
            for n, p in parameters.items()
            if p.default is not inspect.Parameter.empty or p.kind is inspect.Parameter.KEYWORD_ONLY
        }
    takes_any = any(
        p.kind is inspect.Parameter.VAR_KEYWORD and p.name != "_"
        for p in inspect.signature(factory).parameters.values()
    )
    unknown = sorted(set(options) - set(parameters))
    if unknown and not takes_any:
        known = ", ".join(parameters) or "none"
        raise RegistryError(f"{label} has no option {', '.join(unknown)}; its options: {known}")
    missing = [n for n, p in parameters.items() if p.default is inspect.Parameter.empty and n not in options]
    if missing:
        raise OptionError(f"{label} needs the option {', '.join(missing)}")
    hints = _type_hints(factory)
    checked = {}
    for name, value in options.items():
        if name in hints:
            value = _validated(hints[name], value, f"{label}: option {name}={value!r}")
        if name in AT_LEAST_ONE and isinstance(value, int) and not isinstance(value, bool) and value < 1:
            raise OptionError(f"{label}: option {name}={value!r} must be at least 1")
        checked[name] = value
    return checked


def _type_hints(factory: Callable[..., Any]) -> dict[str, Any]:
    """Each parameter's annotation evaluated in its module; one that cannot be evaluated is left out (unchecked)."""
    function = factory.__init__ if inspect.isclass(factory) else factory
    namespace = getattr(inspect.unwrap(function), "__globals__", {})
    hints = {}
    for name, parameter in inspect.signature(factory).parameters.items():
        annotation = parameter.annotation
        if annotation is inspect.Parameter.empty:
            continue
        if isinstance(annotation, str):
            try:
                annotation = eval(annotation, dict(namespace))  # annotations are strings under PEP 563
            except Exception:  # a name imported only for type checking (torch.device, ...)
                continue
        hints[name] = annotation
    return hints


def _validated(annotation: Any, value: Any, what: str) -> Any:
    """``value`` as pydantic validates it against ``annotation``; a mismatch is one-line :class:`OptionError`."""
    from pydantic import TypeAdapter, ValidationError

    try:
        adapter = TypeAdapter(annotation)
    except Exception:  # a type pydantic has no schema for: left to the entry
        return value
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        raise OptionError(f"{what}: {exc.errors()[0]['msg']}") from None
