"""PancapChain against a plain re-implementation of the released inference loop (Visual-AI/Pancap,
``llava/eval/model_vqa_loader_pancapchain.py`` with ``--conv-mode vicuna_v1 --temperature 0``).

The re-implementation here shares no code with pancap's chain: it writes the vicuna_v1 prompt by the rules of the
released ``Conversation.get_prompt`` (``SeparatorStyle.TWO``), tokenizes it as ``tokenizer_image_token`` does, pads
the image to a square as ``expand2square`` does, splices the projected image features into the embedded prompt and
cuts it to ``tokenizer_model_max_length`` as ``prepare_inputs_labels_for_multimodal`` does, runs one ``generate``
per stage and image, and hands each answer on with the released string rules (``deduplicate_box``,
``deduplicate_boxtag``, ``merge_and_deduplicate``). pancap's chain (batched, shared prefix, static cache or not) must
give the same tokens, prompts included, also when stage answers are forced to off-format text.
"""

from __future__ import annotations

import json
import shutil

import jinja2
import pytest
import torch
from PIL import Image

from pancap_retrieval.captioners import get_captioner
from pancap_retrieval.captioners.base import Example
from pancap_retrieval.captioners.conversation import CONVERSATIONS, LLAVA_V1, VICUNA_V1
from pancap_retrieval.captioners.pancapchain import (
    PancapChainCaptioner,
    chain_dtype,
    released_handoff,
    robust_handoff,
)
from pancap_retrieval.errors import ModelLoadError, OptionError

STAGES = ("stage1", "stage2", "stage3", "stage4")

# ------------------------------------------------------------------ the released procedure, written out plainly

# llava/conversation.py at the released commit: conv_vicuna_v1 and conv_llava_v1 (both SeparatorStyle.TWO).
RELEASED_TEMPLATES = {
    "vicuna_v1": {
        "system": "A chat between a curious user and an artificial intelligence assistant. "
        "The assistant gives helpful, detailed, and polite answers to the user's questions.",
        "roles": ("USER", "ASSISTANT"),
        "sep": " ",
        "sep2": "</s>",
    },
    "llava_v1": {
        "system": "A chat between a curious human and an artificial intelligence assistant. "
        "The assistant gives helpful, detailed, and polite answers to the human's questions.",
        "roles": ("USER", "ASSISTANT"),
        "sep": " ",
        "sep2": "</s>",
    },
}
# The four questions of the released loop, {} where the previous hand-off goes.
RELEASED_QUESTIONS = {
    "stage1": "Please localize all entities in this image.",
    "stage2": "Please specify the semantic tags of all entities based on their bounding boxes: {}",
    "stage3": "Please specify missing entities and their locations for this image based on these specified "
    "entities: {}",
    "stage4": "Please provide a hyper-detailed description for this image, including all entities, their "
    "locations, attributes, and relationships, as well as the global image status, based on boxes and tags: {}",
}


def get_prompt(template: dict, messages: list[tuple[str, str | None]]) -> str:
    """``Conversation.get_prompt`` for ``SeparatorStyle.TWO``."""
    seps = [template["sep"], template["sep2"]]
    text = template["system"] + seps[0]
    for i, (role, message) in enumerate(messages):
        if message:
            text += role + ": " + message + seps[i % 2]
        else:
            text += role + ":"
    return text


def released_prompt(question: str) -> str:
    template = RELEASED_TEMPLATES["vicuna_v1"]
    user, assistant = template["roles"]
    return get_prompt(template, [(user, "<image>\n" + question), (assistant, None)])


def tokenizer_image_token(prompt: str, tokenizer) -> list[int]:
    """Each chunk around ``<image>`` tokenized with its own BOS, BOS kept once, ``None`` where the image goes."""
    chunks = [tokenizer(chunk).input_ids for chunk in prompt.split("<image>")]
    ids = [chunks[0][0]]
    for n, chunk in enumerate(chunks):
        if n:
            ids.append(None)
        ids.extend(chunk[1:])
    return ids


def extract_box(text: str) -> list[list[int]]:
    items = text.split("</box>, ")
    items[-1] = items[-1].replace("</box>", "")
    boxes: list[list[int]] = []
    for item in items:
        item = item.replace("<box>", "")
        try:
            box = [int(b) for b in item.lstrip("[").rstrip("]").split(", ")]
            assert len(box) == 4
        except Exception:
            break
        if not any(box == other for other in boxes):
            boxes.append(box)
    return boxes


def extract_boxtag(text: str, boxes: list, tags: list, skip_none: bool) -> tuple[list, list]:
    if skip_none and text[:4] == "None":
        return boxes, tags
    items = text.split("</box>, ")
    items[-1] = items[-1].replace("</box>", "")
    for item in items:
        tag = item.split(" <box>")[0]
        try:
            box = [int(b) for b in item.split(" <box>")[1].lstrip("[").rstrip("]").split(", ")]
            assert len(box) == 4
        except Exception:
            break
        if not any(tag == t and box == b for t, b in zip(tags, boxes)):
            tags.append(tag)
            boxes.append(box)
    return boxes, tags


def deduplicate_box(text: str) -> str:
    return ", ".join(f"<box>[[{b[0]}, {b[1]}, {b[2]}, {b[3]}]]</box>" for b in extract_box(text))


def write_boxtags(boxes: list, tags: list) -> str:
    return ", ".join(f"{t} <box>[[{b[0]}, {b[1]}, {b[2]}, {b[3]}]]</box>" for b, t in zip(boxes, tags))


def deduplicate_boxtag(text: str) -> str:
    return write_boxtags(*extract_boxtag(text, [], [], skip_none=False))


def merge_and_deduplicate(base: str, more: str) -> str:
    boxes, tags = extract_boxtag(base, [], [], skip_none=True)
    return write_boxtags(*extract_boxtag(more, boxes, tags, skip_none=True))


def expand2square(image: Image.Image, mean: list[float]) -> Image.Image:
    width, height = image.size
    side = max(width, height)
    square = Image.new(image.mode, (side, side), tuple(int(m * 255) for m in mean))
    square.paste(image, ((side - width) // 2, (side - height) // 2))
    return square


class ReleasedLoop:
    """The released per-image loop on a converted model: four prompts, one ``generate`` each (or a forced answer)."""

    def __init__(self, model, processor, max_new_tokens: int) -> None:
        self.model, self.processor, self.max_new_tokens = model, processor, max_new_tokens
        self.tokenizer = processor.tokenizer
        self.cap = getattr(model.config, "tokenizer_model_max_length", None)
        self.image_token_id = model.config.image_token_id

    def image_features(self, image: Image.Image) -> torch.Tensor:
        """``encode_images``: the penultimate CLIP layer without CLS, through the projector."""
        square = expand2square(image, self.processor.image_processor.image_mean)
        pixels = self.processor.image_processor(images=[square], do_pad=False, return_tensors="pt")[
            "pixel_values"
        ]
        with torch.no_grad():
            hidden = self.model.model.vision_tower(pixels, output_hidden_states=True).hidden_states[-2][:, 1:]
            return self.model.model.multi_modal_projector(hidden)[0]

    def stage(self, question: str, features: torch.Tensor, forced: list[int] | None) -> dict:
        ids = tokenizer_image_token(released_prompt(question), self.tokenizer)
        at = ids.index(None)
        embed = self.model.get_input_embeddings()
        with torch.no_grad():
            parts = [embed(torch.tensor(ids[:at])), features, embed(torch.tensor(ids[at + 1 :]))]
            embeds = torch.cat(parts)[: self.cap] if self.cap else torch.cat(parts)
            seen = (ids[:at] + [self.image_token_id] * len(features) + ids[at + 1 :])[: len(embeds)]
            if forced is None:
                out = self.model.generate(
                    inputs_embeds=embeds[None],
                    attention_mask=torch.ones(1, len(embeds), dtype=torch.long),
                    max_new_tokens=self.max_new_tokens,
                    do_sample=False,
                    num_beams=1,
                    suppress_tokens=[self.image_token_id],  # not a vocabulary entry of the released model
                )[0].tolist()
            else:
                out = [*forced, self.tokenizer.eos_token_id]
        tokens = out[: out.index(self.tokenizer.eos_token_id)] if self.tokenizer.eos_token_id in out else out
        text = self.tokenizer.decode(tokens, skip_special_tokens=True).strip()
        return {"prompt": seen, "tokens": tokens, "text": text}

    def run(self, image: Image.Image, forced: dict[str, list[int]]) -> dict[str, dict]:
        features = self.image_features(image)
        out = {"stage1": self.stage(RELEASED_QUESTIONS["stage1"], features, forced.get("stage1"))}
        output1 = deduplicate_box(out["stage1"]["text"])
        out["stage2"] = self.stage(
            RELEASED_QUESTIONS["stage2"].format(output1), features, forced.get("stage2")
        )
        output2 = deduplicate_boxtag(out["stage2"]["text"])
        out["stage3"] = self.stage(
            RELEASED_QUESTIONS["stage3"].format(output2), features, forced.get("stage3")
        )
        output3 = merge_and_deduplicate(output2, out["stage3"]["text"])
        out["stage4"] = self.stage(
            RELEASED_QUESTIONS["stage4"].format(output3), features, forced.get("stage4")
        )
        return out


# ------------------------------------------------------------------ edge cases of stage answers

# Stage answers that leave the trained format, each for one image: a repeated item, "None" and "none ...", a
# multi-box group, boxes in the padding band (y < 250 or > 750 on a 2:1 image), an x of 1000, an inverted box, a
# missing space before <box>, a tag repeated with another case, a space before </box>, a trailing full stop.
EDGE_ANSWERS = [
    {
        "stage1": "<box>[[10, 100, 300, 400]]</box>, <box>[[10, 100, 300, 400]]</box>, <box>[[0, 0, 1000, 1000]]"
        "</box>, <box>[[500, 600, 400, 100]]</box>",
        "stage2": "dog <box>[[10, 100, 300, 400]]</box>, dog <box>[[10, 100, 300, 400]]</box>, Dog <box>[[10, 100, "
        "300, 400]]</box>, and cat <box>[[0, 0, 1000, 1000]]</box>",
        "stage3": "None of them: man <box>[[20, 30, 40, 50]]</box>",
    },
    {
        "stage2": "tree <box>[[700, 100, 990, 900]]</box>, bird<box>[[1, 2, 3, 4]]</box>, fish <box>[[7, 7, 8, 8]]"
        "</box>",
        "stage3": "none: man <box>[[20, 30, 40, 50]]</box>, tree <box>[[700, 100, 990, 900]]</box>, Tree <box>[[700"
        ", 100, 990, 900]]</box>, sky <box>[[0, 0, 1000, 240]]</box>.",
    },
    {
        "stage1": "<box>[[0, 250, 1000, 750]]</box>, <box>[[20, 30, 40, 50]] </box>, <box>[[1, 1, 2, 2]]</box>",
        "stage2": "bird<box>[[1, 2, 3, 4]]</box>, fish <box>[[7, 7, 8, 8]]</box>",
        "stage3": "None",
    },
    {
        "stage1": "<box>[[5, 5, 50, 50]], [[60, 60, 90, 90]]</box>, <box>[[1, 2, 3, 4]]</box>",
        "stage2": "kite <box>[[500, 600, 400, 100]]</box>, people <box>[[5, 5, 50, 50]], [[60, 60, 90, 90]]</box>, "
        "bird <box>[[1, 2, 3, 4]]</box>",
        "stage3": "Dog <box>[[10, 100, 300, 400]]</box>",
    },
]


def _photos() -> list[Example]:
    from skimage import data

    out = []
    for name, size in (
        ("chelsea", (60, 30)),
        ("astronaut", (40, 40)),
        ("rocket", (30, 60)),
        ("coffee", (60, 40)),
    ):
        image = Image.fromarray(getattr(data, name)()).convert("RGB").resize(size)
        out.append(Example(name, image, *image.size))
    return out


def _forced_ids(tokenizer, answers: list[dict[str, str]]) -> list[dict[str, list[int]]]:
    return [
        {stage: tokenizer(text, add_special_tokens=False).input_ids for stage, text in a.items()}
        for a in answers
    ]


def _load(path):
    """A converted checkpoint in float64: on random weights, greedy choices then never hinge on float32 rounding
    (a long free run of the tiny model meets top-2 margins of 2e-6), so two correct paths agree on every token."""
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    model = LlavaForConditionalGeneration.from_pretrained(path, dtype=torch.float64).eval()
    return model, AutoProcessor.from_pretrained(path)


def _new_tokens(forced: list[dict[str, list[int]]]) -> int:
    """Room for the longest forced answer and its end-of-sequence token."""
    return max(len(ids) for answers in forced for ids in answers.values()) + 2


def _pancap(captioner: PancapChainCaptioner, examples: list[Example], forced: list[dict]) -> dict:
    """pancap's chain on ``examples`` with stage answers forced: each stage's generations and prompt ids."""
    prompts: dict[str, dict[int, list[int]]] = {}
    generate = captioner.generator.generate

    def recording(items):  # passes through to the real engine; keeps what each row was prompted with
        stage = f"stage{len(prompts) + 1}"
        prompts[stage] = {n: item["input_ids"][0].tolist() for n, item in enumerate(items)}
        return generate(items)

    captioner.generator.generate = recording

    def options(stage: str, i: int) -> dict:
        return {"forced_ids": forced[i][stage]} if stage in forced[i] else {}

    records, generations = captioner.run_chain(examples, options)
    return {"records": records, "generations": generations, "prompts": prompts}


def _assert_same_as_released(
    ours: dict, loop: ReleasedLoop, examples: list[Example], forced: list[dict]
) -> list:
    expected = [loop.run(e.image, f) for e, f in zip(examples, forced)]
    for i, reference in enumerate(expected):
        for stage in STAGES:
            assert ours["prompts"][stage][i] == reference[stage]["prompt"], (i, stage)
            assert ours["generations"][stage][i].token_ids == reference[stage]["tokens"], (i, stage)
            assert ours["generations"][stage][i].text == reference[stage]["text"], (i, stage)
        assert ours["records"][i].caption == reference["stage4"]["text"]
    return expected


@pytest.fixture(scope="module")
def examples() -> list[Example]:
    return _photos()


@pytest.fixture(scope="module")
def loaded(tiny_llava):
    return _load(tiny_llava)


# ------------------------------------------------------------------ templates


@pytest.mark.parametrize("name", ["vicuna_v1", "llava_v1"])
def test_each_template_is_the_released_one(name):
    released, ours = RELEASED_TEMPLATES[name], CONVERSATIONS[name]
    assert (ours.system, ours.roles, ours.sep, ours.sep2) == (
        released["system"],
        released["roles"],
        released["sep"],
        released["sep2"],
    )
    question = "Please localize all entities in this image."
    assert ours.prompt(question) == get_prompt(
        released, [("USER", "<image>\n" + question), ("ASSISTANT", None)]
    )
    # the chat template a converted checkpoint carries writes the same conversation, over several turns too
    turns = [
        ("USER", "<image>\n" + question),
        ("ASSISTANT", "<box>[[1, 2, 3, 4]]</box>"),
        ("USER", "And the tags?"),
        ("ASSISTANT", None),
    ]
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]},
        {"role": "assistant", "content": [{"type": "text", "text": "<box>[[1, 2, 3, 4]]</box>"}]},
        {"role": "user", "content": "And the tags?"},
    ]
    rendered = jinja2.Environment().from_string(ours.chat_template())
    assert rendered.render(messages=messages, add_generation_prompt=True) == get_prompt(released, turns)
    assert VICUNA_V1 is not LLAVA_V1 and len(CONVERSATIONS) == 2


def test_every_stage_prompt_carries_the_vicuna_v1_system_text(loaded, examples):
    model, processor = loaded
    ours = _pancap(PancapChainCaptioner(loaded=(model, processor), max_new_tokens=3), examples[:1], [{}])
    system = processor.tokenizer(RELEASED_TEMPLATES["vicuna_v1"]["system"]).input_ids
    assert all(ours["prompts"][stage][0][: len(system)] == system for stage in STAGES)
    assert processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi?"}]}],
        add_generation_prompt=True,
        tokenize=False,
    ) == released_prompt("Hi?")


# ------------------------------------------------------------------ the hand-off rules


def _handoffs(answers: dict[str, str], handoff, width: int = 60, height: int = 30) -> dict[str, str]:
    return {stage: handoff(stage, answers, width, height)[0] for stage in ("stage2", "stage3", "stage4")}


@pytest.mark.parametrize("answers", [*EDGE_ANSWERS, {"stage1": "", "stage2": "", "stage3": ""}])
def test_released_handoff_is_the_released_string_rules(answers):
    answers = {"stage1": "<box>[[1, 2, 3, 4]]</box>", "stage2": "", "stage3": "", **answers}
    output2 = deduplicate_boxtag(answers["stage2"])
    assert _handoffs(answers, released_handoff) == {
        "stage2": deduplicate_box(answers["stage1"]),
        "stage3": output2,
        "stage4": merge_and_deduplicate(output2, answers["stage3"]),
    }


def test_released_handoff_on_each_edge_case():
    first, second, third, fourth = ({"stage1": "", "stage2": "", "stage3": "", **a} for a in EDGE_ANSWERS)
    # a repeat dropped; x = 1000, a y in the padding band and an inverted box kept as written
    assert _handoffs(first, released_handoff)["stage2"] == (
        "<box>[[10, 100, 300, 400]]</box>, <box>[[0, 0, 1000, 1000]]</box>, <box>[[500, 600, 400, 100]]</box>"
    )
    # exact (tag, box) repeats dropped before stage 3 ("Dog" is another tag); "and cat" is a tag as written
    assert _handoffs(first, released_handoff)["stage3"] == (
        "dog <box>[[10, 100, 300, 400]]</box>, Dog <box>[[10, 100, 300, 400]]</box>, and cat <box>[[0, 0, 1000, "
        "1000]]</box>"
    )
    # a stage-3 answer starting with "None" adds nothing
    assert _handoffs(first, released_handoff)["stage4"] == _handoffs(first, released_handoff)["stage3"]
    # a missing space before <box> ends the list; "none: man" is a tag (only "None" skips); the trailing "."
    # makes the last box unreadable
    assert _handoffs(second, released_handoff)["stage3"] == "tree <box>[[700, 100, 990, 900]]</box>"
    assert _handoffs(second, released_handoff)["stage4"] == (
        "tree <box>[[700, 100, 990, 900]]</box>, none: man <box>[[20, 30, 40, 50]]</box>, Tree <box>[[700, 100, "
        "990, 900]]</box>"
    )
    # a space before </box> ends stage 1's list; a first item without a space before <box> gives nothing
    assert _handoffs(third, released_handoff) == {
        "stage2": "<box>[[0, 250, 1000, 750]]</box>",
        "stage3": "",
        "stage4": "",
    }
    # a multi-box group ends the list, in stage 1 and in stage 2
    assert _handoffs(fourth, released_handoff) == {
        "stage2": "",
        "stage3": "kite <box>[[500, 600, 400, 100]]</box>",
        "stage4": "kite <box>[[500, 600, 400, 100]]</box>, Dog <box>[[10, 100, 300, 400]]</box>",
    }


# What `-o handoff=robust` does differently, one case per difference README lists (on a 60 x 30 image: y below 250
# or above 750 is the padding band).
ROBUST_DIFFERENCES = {
    "integers rewritten: clamped to the image, 1000 -> 999": (
        {"stage1": "<box>[[10, 100, 300, 400]]</box>, <box>[[0, 0, 1000, 1000]]</box>"},
        "stage2",
        "<box>[[10, 100, 300, 400]]</box>, <box>[[0, 0, 1000, 1000]]</box>",
        "<box>[[10, 250, 300, 400]]</box>, <box>[[0, 250, 999, 750]]</box>",
    ),
    "inverted boxes dropped": (
        {"stage1": "<box>[[500, 600, 400, 300]]</box>, <box>[[1, 260, 3, 270]]</box>"},
        "stage2",
        "<box>[[500, 600, 400, 300]]</box>, <box>[[1, 260, 3, 270]]</box>",
        "<box>[[1, 260, 3, 270]]</box>",
    ),
    "reading goes on past a broken item; multi-box groups read": (
        {
            "stage1": "<box>[[5, 300, 50, 350]], [[60, 300, 90, 350]]</box>, <box>[[1, 2</box>, <box>[[1, 260, 3, 270]]</box>"
        },
        "stage2",
        "",
        "<box>[[5, 300, 50, 350]]</box>, <box>[[60, 300, 90, 350]]</box>, <box>[[1, 260, 3, 270]]</box>",
    ),
    "a tag without a space before <box> read": (
        {"stage2": "bird<box>[[1, 260, 3, 270]]</box>"},
        "stage3",
        "",
        "bird <box>[[1, 260, 3, 270]]</box>",
    ),
    "tags trimmed of punctuation and a leading 'and'; a tagless box joins the entity before": (
        {"stage2": "and cat. <box>[[1, 260, 3, 270]]</box>, <box>[[5, 300, 9, 310]]</box>"},
        "stage3",
        "and cat. <box>[[1, 260, 3, 270]]</box>",
        "cat <box>[[1, 260, 3, 270], [5, 300, 9, 310]]</box>",
    ),
    "stage-2 repeats kept in stage 3's prompt": (
        {"stage2": "dog <box>[[1, 260, 3, 270]]</box>, dog <box>[[1, 260, 3, 270]]</box>"},
        "stage3",
        "dog <box>[[1, 260, 3, 270]]</box>",
        "dog <box>[[1, 260, 3, 270]]</box>, dog <box>[[1, 260, 3, 270]]</box>",
    ),
    "tags equal but for case merged": (
        {"stage2": "dog <box>[[1, 260, 3, 270]]</box>", "stage3": "Dog <box>[[1, 260, 3, 270]]</box>"},
        "stage4",
        "dog <box>[[1, 260, 3, 270]]</box>, Dog <box>[[1, 260, 3, 270]]</box>",
        "dog <box>[[1, 260, 3, 270]]</box>",
    ),
    "'none' in any case, after spaces, adds nothing": (
        {"stage2": "dog <box>[[1, 260, 3, 270]]</box>", "stage3": "none: cat <box>[[5, 300, 9, 310]]</box>"},
        "stage4",
        "dog <box>[[1, 260, 3, 270]]</box>, none: cat <box>[[5, 300, 9, 310]]</box>",
        "dog <box>[[1, 260, 3, 270]]</box>",
    ),
}


@pytest.mark.parametrize("case", list(ROBUST_DIFFERENCES))
def test_robust_handoff_differs_where_readme_says(case):
    answers, stage, released, robust = ROBUST_DIFFERENCES[case]
    answers = {"stage1": "", "stage2": "", "stage3": "", **answers}
    assert released_handoff(stage, answers, 60, 30)[0] == released
    assert robust_handoff(stage, answers, 60, 30)[0] == robust


def test_robust_handoff_equals_released_on_answers_in_the_trained_format():
    """Items of one box each, integers within the image, tags without punctuation, no repeats, no 'None'."""
    answers = {
        "stage1": "<box>[[10, 20, 300, 400]]</box>, <box>[[0, 0, 999, 999]]</box>",
        "stage2": "dog <box>[[10, 20, 300, 400]]</box>, blue sky <box>[[0, 0, 999, 999]]</box>",
        "stage3": "red ball <box>[[400, 400, 600, 600]]</box>",
    }
    for width, height in ((40, 40), (100, 100)):
        assert _handoffs(answers, robust_handoff, width, height) == _handoffs(
            answers, released_handoff, width, height
        )


# ------------------------------------------------------------------ the whole loop on a tiny model


@pytest.mark.slow
def test_chain_equals_the_released_loop_token_for_token(loaded, examples):
    """Four images batched three and one with the shared prefix give the tokens and prompts of the released loop,
    image by image: free generation in every stage, then off-format answers forced into stages 1 to 3."""
    model, processor = loaded
    loop = ReleasedLoop(model, processor, max_new_tokens=24)
    captioner = PancapChainCaptioner(
        loaded=(model, processor), batch_size=3, max_new_tokens=24, static_cache=False
    )
    free = [{}] * len(examples)
    expected = _assert_same_as_released(_pancap(captioner, examples, free), loop, examples, free)
    assert len({r["stage1"]["text"] for r in expected}) > 1  # the image reaches the model
    _forced_chain_equals_released(loaded, examples, static_cache=False)


@pytest.mark.slow
def test_chain_with_the_static_cache_equals_the_released_loop(loaded, examples):
    _forced_chain_equals_released(loaded, examples, static_cache=True)


def _forced_chain_equals_released(loaded, examples: list[Example], static_cache: bool) -> None:
    """Off-format answers forced into stages 1 to 3 (image 2's stage 1 free), stage 4 free after the hand-off."""
    model, processor = loaded
    forced = _forced_ids(processor.tokenizer, EDGE_ANSWERS)
    loop = ReleasedLoop(model, processor, max_new_tokens=_new_tokens(forced))
    captioner = PancapChainCaptioner(
        loaded=loaded, batch_size=3, max_new_tokens=_new_tokens(forced), static_cache=static_cache
    )
    ours = _pancap(captioner, examples, forced)
    expected = _assert_same_as_released(ours, loop, examples, forced)
    stage4 = processor.tokenizer.decode(ours["prompts"]["stage4"][0], skip_special_tokens=True)
    assert stage4.endswith(
        f"boxes and tags: {_handoffs(EDGE_ANSWERS[0], released_handoff)['stage4']} ASSISTANT:"
    )
    assert all(r["stage4"]["tokens"] for r in expected)  # stage 4 generated after each hand-off


@pytest.mark.slow
def test_a_prompt_over_the_cap_is_cut_as_the_released_model_cuts_it(tiny_llava, examples, tmp_path):
    """tokenizer_model_max_length set in config.json: a prompt over it keeps its first that many positions (system
    prompt, image features, the start of the question and hand-off), then generation goes on from there."""
    model, processor = _load(tiny_llava)
    forced = _forced_ids(processor.tokenizer, EDGE_ANSWERS)
    new_tokens = _new_tokens(forced)
    plain = ReleasedLoop(model, processor, max_new_tokens=new_tokens)
    runs = [plain.run(e.image, f) for e, f in zip(examples, forced)]
    cap = (
        min(len(r["stage4"]["prompt"]) for r in runs) - 7
    )  # every stage-4 prompt is over it, some others too
    over = [[stage for stage in STAGES if len(r[stage]["prompt"]) > cap] for r in runs]
    assert all(stages[-1] == "stage4" for stages in over) and len({len(stages) for stages in over}) > 1

    capped = tmp_path / "capped"
    shutil.copytree(tiny_llava, capped)
    config = json.loads((capped / "config.json").read_text())
    (capped / "config.json").write_text(json.dumps({**config, "tokenizer_model_max_length": cap}))
    assert PancapChainCaptioner(model=str(capped), max_new_tokens=2).manifest()["prompt_cap"] == cap
    loaded = _load(capped)
    captioner = PancapChainCaptioner(
        loaded=loaded, batch_size=3, max_new_tokens=new_tokens, static_cache=False
    )
    ours = _pancap(captioner, examples, forced)
    _assert_same_as_released(ours, ReleasedLoop(*loaded, max_new_tokens=new_tokens), examples, forced)
    assert all(len(ids) == cap for ids in ours["prompts"]["stage4"].values())
    assert [r.meta["cut_prompts"] for r in ours["records"]] == over
    assert [r["stage4"]["tokens"] for r in runs] != [
        g.token_ids for g in ours["generations"]["stage4"].values()
    ]


def test_a_cap_that_leaves_no_room_for_a_question_is_refused(tiny_llava):
    model, processor = _load(tiny_llava)
    model.config.tokenizer_model_max_length = 10
    with pytest.raises(ModelLoadError, match="tokenizer_model_max_length 10 leaves no room"):
        PancapChainCaptioner(loaded=(model, processor))


@pytest.mark.slow
def test_robust_option_through_the_registry(tiny_llava, loaded, examples):
    forced = _forced_ids(loaded[1].tokenizer, EDGE_ANSWERS)
    runs = {}
    for handoff in ("released", "robust"):
        captioner = get_captioner(
            "pancapchain", model=str(tiny_llava), max_new_tokens=_new_tokens(forced), handoff=handoff
        )
        assert captioner.manifest()["handoff"] == handoff
        runs[handoff] = _pancap(captioner, examples, forced)
    # the forced answers are the same; the prompts built from them are not
    assert runs["released"]["prompts"]["stage1"] == runs["robust"]["prompts"]["stage1"]
    for stage in ("stage2", "stage3", "stage4"):
        assert runs["released"]["prompts"][stage] != runs["robust"]["prompts"][stage]
    with pytest.raises(OptionError, match="handoff"):
        get_captioner("pancapchain", model=str(tiny_llava), handoff="exact")


def test_fp16_on_a_gpu_by_default_fp32_on_a_cpu():
    assert chain_dtype("cuda") == chain_dtype(torch.device("cuda", 1)) == torch.float16
    assert chain_dtype("cpu") == torch.float32
    assert chain_dtype("cuda", "bf16") == torch.bfloat16 and chain_dtype("cuda", "fp32") == torch.float32
