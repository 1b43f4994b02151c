"""Judges that turn a caption into PancapScore items and answer yes/no questions against a caption.

- ``rule``: offline and instant. Entity instances are the phrases that carry boxes (one instance per box, a
  box repeated later in the text is the same instance); it computes the tag and location dimensions only.
- ``hf:MODEL_ID_OR_DIR``: any transformers causal LM (the method's judge is ``Qwen/Qwen2.5-14B-Instruct``),
  loaded from a local directory or the local Hugging Face cache, decoding greedily so the same inputs give
  the same score. It extracts entities, attributes, relations and global state with their question pairs
  (asked for as JSON, parsed leniently), and answers question pairs against a caption. Output that cannot
  be used is counted, never raised.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Protocol

from pancap_retrieval.captions.boxes import Box
from pancap_retrieval.captions.model import format_caption, read_boxes
from pancap_retrieval.errors import RegistryError
from pancap_retrieval.pancapscore.items import CaptionItems, EntityItem, Statement
from pancap_retrieval.registry import Entry, Registry
from pancap_retrieval.textgen import GreedyLM

DEFAULT_HF_MODEL = "Qwen/Qwen2.5-14B-Instruct"
PROMPT_VERSION = "pancapscore-json-1"
JUDGES = Registry(
    "judge",
    {
        "rule": Entry(
            "pancap_retrieval.pancapscore.judges:RuleJudge",
            "offline and instant: entities from the caption's boxes; tag and location only",
        ),
        "hf": Entry(
            "pancap_retrieval.pancapscore.judges:HFJudge",
            f"hf:MODEL_ID_OR_DIR, any transformers causal LM decoding greedily (default {DEFAULT_HF_MODEL})",
        ),
    },
)


class Judge(Protocol):
    """What the scorer needs of a judge."""

    name: str
    extracts_statements: bool

    def extract(self, caption: str) -> CaptionItems: ...

    def answer(
        self, caption: str, entities: list[EntityItem], questions: list[tuple[str, str]]
    ) -> list[tuple[str | None, str | None]]: ...

    def describe(self) -> dict[str, Any]: ...


def normalised_text(
    caption: str,
    dialect: str = "auto",
    image_size: tuple[int, int] | None = None,
    *,
    ndigits: int = 3,
    fix: str = "give the image's size",
) -> str:
    """The caption with every box, read in ``dialect`` on ``image_size``
    (:func:`~pancap_retrieval.captions.model.read_boxes`), written as ``[[x1, y1, x2, y2]]`` fractions of the
    unpadded image: the form judges read.

    >>> normalised_text("a photo <box>[[0, 167, 1000, 833]]</box>", "asmv2", (451, 300))
    'a photo [[0.0, 0.0, 1.0, 1.0]]'
    """
    parsed = read_boxes(caption, dialect, image_size, fix=fix)
    return format_caption(parsed, "norm", ndigits=ndigits) if parsed.groups else caption


class RuleJudge:
    """Entities from the caption's own boxes; no attributes, relations or global state."""

    name = "rule"
    extracts_statements = False

    def extract(self, caption: str) -> CaptionItems:
        """Entity instances of a caption whose boxes are fractions of the image (:func:`normalised_text`)."""
        parsed = read_boxes(caption, fix="write its boxes as fractions of the image first (normalised_text)")
        seen: set[tuple[float, ...]] = set()
        entities: list[EntityItem] = []
        for entity in parsed.entities:
            for box in entity.boxes:
                key = tuple(box.as_list(4))
                if key in seen:  # the same box named again later: the same instance
                    continue
                seen.add(key)
                entities.append(EntityItem(len(entities) + 1, entity.phrase, box))
        return CaptionItems(entities=entities, statements_extracted=False, invalid=parsed.malformed)

    def answer(
        self, caption: str, entities: list[EntityItem], questions: list[tuple[str, str]]
    ) -> list[tuple[str | None, str | None]]:
        raise NotImplementedError(
            "the rule judge answers no questions; attribute, relation and global need an LLM judge"
        )

    def describe(self) -> dict[str, Any]:
        return {
            "name": "rule",
            "computes": ["tag", "location"],
            "not_computed": ["attribute", "relation", "global"],
            "entities": "the noun phrase of the entity each box grounds (read_boxes), one instance per distinct box",
        }


# ---------------------------------------------------------------------------------------------- prompts

_EXAMPLE_CAPTION = (
    "A blue motorcycle [[0.50, 0.70, 0.83, 1.00]] parked by a painted door of a big house "
    "[[0.01, 0.40, 1.00, 0.98]], with a clear and expansive sky [[0.00, 0.00, 1.00, 0.40]] overhead. "
    "The motorcycle has black wheels. The scene feels tranquil and timeless."
)
_EXAMPLE_ITEMS = {
    "entities": [
        {"id": 1, "kind": "whole", "tag": "motorcycle", "box": [0.50, 0.70, 0.83, 1.00]},
        {"id": 2, "kind": "whole", "tag": "house", "box": [0.01, 0.40, 1.00, 0.98]},
        {"id": 3, "kind": "whole", "tag": "sky", "box": [0.00, 0.00, 1.00, 0.40]},
        {"id": 4, "kind": "part", "tag": "door", "box": None},
        {"id": 5, "kind": "part", "tag": "wheels", "box": None},
    ],
    "attributes": [
        {
            "entity": 1,
            "statement": "entity 1 is blue",
            "yes_question": "Is entity 1 blue?",
            "no_question": "Is entity 1 red?",
        },
        {
            "entity": 4,
            "statement": "entity 4 is painted",
            "yes_question": "Is entity 4 painted?",
            "no_question": "Is entity 4 clean with no painting?",
        },
        {
            "entity": 5,
            "statement": "entity 5 is black",
            "yes_question": "Is entity 5 black?",
            "no_question": "Is entity 5 white?",
        },
    ],
    "relations": [
        {
            "subject": 1,
            "object": 4,
            "statement": "entity 1 is next to entity 4",
            "yes_question": "Is entity 1 next to entity 4?",
            "no_question": "Is entity 1 far from entity 4?",
        },
        {
            "subject": 5,
            "object": 1,
            "statement": "entity 5 is a part of entity 1",
            "yes_question": "Is entity 5 a part of entity 1?",
            "no_question": "Does entity 5 include entity 1?",
        },
    ],
    "global": [
        {
            "statement": "the scene feels tranquil and timeless",
            "yes_question": "Does the scene feel tranquil and timeless?",
            "no_question": "Does the scene feel depressive?",
        },
    ],
}

EXTRACT_PROMPT = (
    "Extract all contents of the image description below, covering every sentence, as one JSON object with four lists.\n"
    '- "entities": every entity instance mentioned, as {"id": N, "kind": "whole" or "part", "tag": a short semantic tag, '
    '"box": [x1, y1, x2, y2] copied exactly from the description, or null when the instance has no box}. '
    "A box belongs to ONE instance: a phrase followed by two boxes is two instances.\n"
    '- "attributes": {"entity": N, "statement": ..., "yes_question": ..., "no_question": ...} for color, shape, type, state, '
    "material, texture, text rendering, appearance, decoration and any other attribute of each entity. Use the "
    'description\'s own words, writing the entity as "entity N".\n'
    '- "relations": {"subject": N, "object": M, "statement": ..., "yes_question": ..., "no_question": ...} for part-whole, '
    "spatial, scale and action relations between pairs of entities.\n"
    '- "global": {"statement": ..., "yes_question": ..., "no_question": ...} for the feeling, camera viewpoint and any '
    "other global state of the image.\n"
    'For every pair, the correct answer to "yes_question" is Yes and to "no_question" is No, according to the description.\n\n'
    "Example description:\n"
    + _EXAMPLE_CAPTION
    + "\nExample output (shortened):\n"
    + json.dumps(_EXAMPLE_ITEMS)
    + "\n\n"
    "Output only the JSON object.\n\nDescription:\n{caption}"
)

ANSWER_PROMPT = (
    "Answer pairs of yes/no questions about an image using only the description below. Entities are written as "
    '"entity N"; the list gives the tag and box of each entity in the description. Answer "no" when the '
    "description does not support the statement.\n\n"
    "Description:\n{caption}\n\nEntities:\n{entities}\n\nQuestion pairs:\n{questions}\n\n"
    'Output only JSON: {{"answers": [{{"n": 1, "a": "yes" or "no", "b": "yes" or "no"}}, ...]}}, one entry per pair, '
    'where "a" answers the first question of pair n and "b" the second.'
)


# ---------------------------------------------------------------------------------------------- parsing


def _strip_fences(text: str) -> str:
    return re.sub(r"```(?:json)?", "", text)


def _repair(text: str) -> Any:
    """Parse the longest prefix of a truncated JSON object that can be closed; None when there is none."""
    start = text.find("{")
    if start < 0:
        return None
    stack: list[str] = []
    in_string = escaped = False
    cut: tuple[int, list[str]] | None = None
    for pos in range(start, len(text)):
        char = text[pos]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
            continue
        if char == '"':
            in_string = True
        elif char in "{[":
            stack.append("}" if char == "{" else "]")
        elif char in "}]":
            if not stack:
                break
            stack.pop()
            if not stack:
                cut = (pos + 1, [])
                break
            cut = (pos + 1, list(stack))
    if cut is None:
        return None
    end, open_ = cut
    try:
        return json.loads(text[start:end] + "".join(reversed(open_)))
    except json.JSONDecodeError:
        return None


def loads_lenient(text: str) -> Any:
    """The first JSON object in ``text`` (code fences, prose around it and a truncated tail tolerated); None if none.

    >>> loads_lenient('Sure! ```json\\n{"a": [1, 2]}\\n```')
    {'a': [1, 2]}
    >>> loads_lenient('{"a": [{"x": 1}, {"x": 2}, {"x"')
    {'a': [{'x': 1}, {'x': 2}]}
    >>> loads_lenient("no json here") is None
    True
    """
    text = _strip_fences(text)
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            value = _repair(text[match.start() :])
        if isinstance(value, dict):
            return value
    return None


def _as_id(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        found = re.fullmatch(r"\s*(?:entity\s*)?(\d+)\s*", value, flags=re.IGNORECASE)
        return int(found.group(1)) if found else None
    return None


def _as_box(value: Any) -> Box | str | None:
    """A normalised box, None for no box, or the string "invalid"."""
    if value is None or value == [] or value == "":
        return None
    if isinstance(value, str):
        numbers = re.findall(r"-?\d+(?:\.\d+)?", value)
        value = [float(n) for n in numbers]
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], list):
        value = value[0]
    if not isinstance(value, list) or len(value) != 4:
        return "invalid"
    try:
        x1, y1, x2, y2 = (float(v) for v in value)
    except (TypeError, ValueError):
        return "invalid"
    if not all(-0.01 <= v <= 1.01 for v in (x1, y1, x2, y2)) or x2 < x1 or y2 < y1:
        return "invalid"
    return Box(*(min(1.0, max(0.0, v)) for v in (x1, y1, x2, y2)))


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def parse_extraction(output: str) -> CaptionItems:
    """Items from a judge's extraction output; unusable pieces counted in ``invalid``, no JSON -> ``failed``.

    >>> items = parse_extraction('{"entities": [{"id": 1, "tag": "dog", "box": [0, 0, 0.5, 0.5]}, {"id": "x"}],'
    ...     ' "attributes": [{"entity": 1, "statement": "entity 1 is brown", "yes_question": "Is entity 1 brown?",'
    ...     ' "no_question": "Is entity 1 white?"}], "relations": [], "global": []}')
    >>> [e.tag for e in items.entities], len(items.statements), items.invalid
    (['dog'], 1, 1)
    """
    data = loads_lenient(output)
    if not isinstance(data, dict):
        return CaptionItems(failed="no JSON object in the judge's output")
    keys = ("entities", "attributes", "relations", "global")
    if not any(isinstance(data.get(k), list) for k in keys):
        return CaptionItems(failed="the judge's JSON has none of: " + ", ".join(keys))
    items = CaptionItems()
    for raw in _list(data.get("entities")):
        entity_id = _as_id(raw.get("id")) if isinstance(raw, dict) else None
        tag = _text(raw.get("tag")) if isinstance(raw, dict) else ""
        if entity_id is None or not tag or items.entity(entity_id) is not None:
            items.invalid += 1
            continue
        box = _as_box(raw.get("box"))
        if box == "invalid":
            items.invalid += 1
            box = None
        part = str(raw.get("kind", "whole")).strip().lower() == "part"
        items.entities.append(EntityItem(entity_id, tag, box, part))  # type: ignore[arg-type]
    known = {e.id for e in items.entities}
    specs = (
        ("attribute", "attributes", ("entity",)),
        ("relation", "relations", ("subject", "object")),
        ("global", "global", ()),
    )
    for kind, key, refs in specs:
        for raw in _list(data.get(key)):
            if not isinstance(raw, dict):
                items.invalid += 1
                continue
            ids = tuple(_as_id(raw.get(r)) for r in refs)
            yes_q, no_q = _text(raw.get("yes_question")), _text(raw.get("no_question"))
            statement = _text(raw.get("statement")) or yes_q
            if any(i is None or i not in known for i in ids) or not yes_q or not no_q:
                items.invalid += 1
                continue
            items.statements.append(Statement(kind, statement, ids, yes_q, no_q))  # type: ignore[arg-type]
    return items


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _yes_no(value: Any) -> str | None:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        word = value.strip().strip(".!\"' ").lower()
        if word in ("yes", "y", "true"):
            return "yes"
        if word in ("no", "n", "false"):
            return "no"
    return None


def parse_answers(output: str, n_questions: int) -> list[tuple[str | None, str | None]]:
    """One (first, second) answer per question pair, each "yes", "no" or None when missing or unreadable.

    >>> parse_answers('{"answers": [{"n": 1, "a": "Yes", "b": "no"}, {"n": 3, "a": "no", "b": "maybe"}]}', 3)
    [('yes', 'no'), (None, None), ('no', None)]
    >>> parse_answers('1. yes, no\\n2: No / No', 2)
    [('yes', 'no'), ('no', 'no')]
    """
    answers: list[tuple[str | None, str | None]] = [(None, None)] * n_questions
    data = loads_lenient(output)
    entries = data.get("answers") if isinstance(data, dict) else None
    if isinstance(entries, list):
        for position, entry in enumerate(entries):
            if isinstance(entry, dict):
                number = _as_id(entry.get("n", entry.get("id", position + 1)))
                first, second = entry.get("a", entry.get("first")), entry.get("b", entry.get("second"))
            elif isinstance(entry, list) and len(entry) == 2:
                number, (first, second) = position + 1, entry
            else:
                continue
            if number is not None and 1 <= number <= n_questions:
                answers[number - 1] = (_yes_no(first), _yes_no(second))
        return answers
    for match in re.finditer(r"(?m)^\D*?(\d+)\W+(yes|no)\b\W+(yes|no)\b", output, flags=re.IGNORECASE):
        number = int(match.group(1))
        if 1 <= number <= n_questions:
            answers[number - 1] = (match.group(2).lower(), match.group(3).lower())
    return answers


# ---------------------------------------------------------------------------------------------- hf judge


class HFJudge:
    """A transformers causal LM as judge, greedy decoding; outputs cached in memory (and on disk with ``cache_dir``)."""

    extracts_statements = True

    def __init__(
        self,
        model: str = DEFAULT_HF_MODEL,
        *,
        device: str | None = None,
        dtype: str = "auto",
        max_new_tokens: int = 4096,
        cache_dir: Path | None = None,
    ) -> None:
        self.model_ref = model
        self.name = f"hf:{model}"
        self.max_new_tokens = max_new_tokens
        self._lm = GreedyLM(
            model, device=device, dtype=dtype, max_new_tokens=max_new_tokens, label="judge model"
        )
        self._memo: dict[str, str] = {}
        self._cache_path = Path(cache_dir) / "pancapscore_judge_cache.jsonl" if cache_dir else None
        self.n_generations = 0
        self.n_cache_hits = 0

    def _key(self, prompt: str) -> str:
        return hashlib.sha256(
            json.dumps([PROMPT_VERSION, self.model_ref, self.max_new_tokens, prompt]).encode()
        ).hexdigest()

    def _read_cache(self) -> None:
        if self._cache_path is None or not self._cache_path.is_file() or self._memo:
            return
        for line in self._cache_path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
                self._memo[row["key"]] = row["output"]
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a torn last line

    def generate(self, prompt: str) -> str:
        """The model's greedy reply to one user message (chat template applied when the tokenizer has one)."""
        self._read_cache()
        key = self._key(prompt)
        if key in self._memo:
            self.n_cache_hits += 1
            return self._memo[key]
        output = self._lm.generate([prompt], batch_size=1)[0]
        self.n_generations += 1
        self._memo[key] = output
        if self._cache_path is not None:
            self._cache_path.parent.mkdir(parents=True, exist_ok=True)
            with self._cache_path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps({"key": key, "output": output}, ensure_ascii=False) + "\n")
        return output

    def extract(self, caption: str) -> CaptionItems:
        return parse_extraction(self.generate(EXTRACT_PROMPT.replace("{caption}", caption)))

    def answer(
        self, caption: str, entities: list[EntityItem], questions: list[tuple[str, str]]
    ) -> list[tuple[str | None, str | None]]:
        if not questions:
            return []
        listing = (
            "\n".join(
                f"entity {e.id}: {e.tag}" + (f" {e.box.as_list(3)}" if e.box is not None else "")
                for e in entities
            )
            or "(none)"
        )
        lines = "\n".join(f"{n}. {yes} | {no}" for n, (yes, no) in enumerate(questions, start=1))
        prompt = ANSWER_PROMPT.format(caption=caption, entities=listing, questions=lines)
        return parse_answers(self.generate(prompt), len(questions))

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model_ref,
            "decoding": "greedy",
            "max_new_tokens": self.max_new_tokens,
            "prompt_version": PROMPT_VERSION,
            "computes": ["tag", "location", "attribute", "relation", "global"],
            "generations": self.n_generations,
            "cache_hits": self.n_cache_hits,
        }


def get_judge(spec: str | Judge = "rule", **kwargs: Any) -> Judge:
    """``"rule"``, ``"hf"`` (the method's default model) or ``"hf:MODEL_ID_OR_DIR"``; a judge object passes through."""
    if not isinstance(spec, str):
        return spec
    name, sep, arg = spec.partition(":")
    if name == "hf":
        if sep and not arg.strip():
            raise RegistryError("judge 'hf:' needs a model id or directory after the colon")
        return JUDGES.build("hf", model=arg.strip() or DEFAULT_HF_MODEL, **kwargs)
    if sep or name not in JUDGES:
        raise RegistryError(f"unknown judge {spec!r}; known: rule, hf:MODEL_ID_OR_DIR")
    return JUDGES.build(name, **kwargs)


__all__ = [
    "ANSWER_PROMPT",
    "DEFAULT_HF_MODEL",
    "EXTRACT_PROMPT",
    "HFJudge",
    "Judge",
    "RuleJudge",
    "get_judge",
    "loads_lenient",
    "normalised_text",
    "parse_answers",
    "parse_extraction",
]
