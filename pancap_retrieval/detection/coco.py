"""The 80 COCO detection categories, in the 0-based order the packaged detector emits, and their plurals."""

from __future__ import annotations

COCO80_NAMES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)  # fmt: skip

_IRREGULAR = {
    "person": "people",
    "mouse": "mice",
    "knife": "knives",
    "sheep": "sheep",
    "skis": "pairs of skis",
    "scissors": "pairs of scissors",
    "broccoli": "broccoli florets",
}


def plural(name: str) -> str:
    """The plural of a COCO category name.

    >>> [plural(n) for n in ("person", "bus", "wine glass", "knife", "cup", "skis")]
    ['people', 'buses', 'wine glasses', 'knives', 'cups', 'pairs of skis']
    """
    if name in _IRREGULAR:
        return _IRREGULAR[name]
    if name.endswith(("s", "sh", "ch", "x")):
        return name + "es"
    return name + "s"


def singular_phrase(name: str) -> str:
    """A category name with its indefinite article.

    >>> singular_phrase("apple"), singular_phrase("skis"), singular_phrase("cat")
    ('an apple', 'a pair of skis', 'a cat')
    """
    if name in ("skis", "scissors"):
        return f"a pair of {name}"
    return ("an " if name[0] in "aeiou" else "a ") + name


_NUMBER_WORDS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
)  # fmt: skip
_ORDINALS = (
    "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth", "eleventh",
    "twelfth",
)  # fmt: skip


def count_phrase(name: str, count: int) -> str:
    """``count`` objects of category ``name`` in words.

    >>> count_phrase("person", 2), count_phrase("cup", 1), count_phrase("car", 14)
    ('two people', 'a cup', '14 cars')
    """
    if count == 1:
        return singular_phrase(name)
    number = _NUMBER_WORDS[count] if count < len(_NUMBER_WORDS) else str(count)
    return f"{number} {plural(name)}"


def ordinal(index: int) -> str:
    """The ordinal word of a 0-based index.

    >>> ordinal(0), ordinal(11), ordinal(12)
    ('first', 'twelfth', '13th')
    """
    if index < len(_ORDINALS):
        return _ORDINALS[index]
    n = index + 1
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
