"""LLaVA's conversation templates, one definition each, as the released ``llava/conversation.py`` has them.

Both are ``SeparatorStyle.TWO`` templates: the system text, then each turn as ``ROLE: message`` followed by ``sep``
after a user turn and ``sep2`` after an assistant turn, and ``ROLE:`` alone for the turn still to come. They differ
only in the system text:

- ``vicuna_v1`` ("a curious user ... the user's questions"): ``conv_templates["v1"]`` and ``["vicuna_v1"]``, the
  template of training with ``--version v1`` and of evaluation with ``--conv-mode vicuna_v1``. PancapChain (its
  released training and inference scripts), ASMv2 (stage-2 scripts), ShareGPT4V and LLaVA-1.5 (their fine-tuning
  scripts) were all trained with it.
- ``llava_v1`` ("a curious human ... the human's questions"): ``conv_templates["llava_v1"]``, the one the LLaVA
  demo picks by model name; no checkpoint pancap converts was trained with it.
"""

from __future__ import annotations

from dataclasses import dataclass

from pancap_retrieval.errors import OptionError

IMAGE_TOKEN = "<image>"


@dataclass(frozen=True)
class Conversation:
    """A ``SeparatorStyle.TWO`` conversation template of the released LLaVA code."""

    name: str
    system: str
    roles: tuple[str, str] = ("USER", "ASSISTANT")
    sep: str = " "
    sep2: str = "</s>"

    def prompt(self, question: str) -> str:
        """The released prompt for one user turn with an image (``<image>\\n`` before the question), then the
        assistant's cue.

        >>> VICUNA_V1.prompt("Hi?").endswith("the user's questions. USER: <image>\\nHi? ASSISTANT:")
        True
        """
        user, assistant = self.roles
        return f"{self.system}{self.sep}{user}: {IMAGE_TOKEN}\n{question}{self.sep}{assistant}:"

    def chat_template(self) -> str:
        """The same conversation as a transformers chat template (any number of turns; images before the text of
        their turn), for a converted checkpoint's processor."""
        user, assistant = self.roles
        images = (
            "{% for part in message['content'] %}{% if part['type'] == 'image' %}" + IMAGE_TOKEN + "\n"
            "{% endif %}{% endfor %}"
        )
        texts = "{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}"

        def turn(role: str, parts: str, sep: str) -> str:
            string = "{{ message['content'] }}"
            return f"{role}: {{% if message['content'] is string %}}{string}{{% else %}}{parts}{{% endif %}}{sep}"

        first = "{% if loop.first %}" + self.system + self.sep + "{% endif %}"
        user_turn = "{% if message['role'] == 'user' %}" + turn(user, images + texts, self.sep)
        assistant_turn = "{% elif message['role'] == 'assistant' %}" + turn(assistant, texts, self.sep2)
        turns = (
            "{% for message in messages %}" + first + user_turn + assistant_turn + "{% endif %}{% endfor %}"
        )
        return turns + "{% if add_generation_prompt %}" + assistant + ":{% endif %}"


VICUNA_V1 = Conversation(
    "vicuna_v1",
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions.",
)
LLAVA_V1 = Conversation(
    "llava_v1",
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions.",
)
CONVERSATIONS: dict[str, Conversation] = {c.name: c for c in (VICUNA_V1, LLAVA_V1)}


def conversation(name: str) -> Conversation:
    """The template called ``name``; an unknown name is a one-line error listing the known ones."""
    if name not in CONVERSATIONS:
        raise OptionError(f"unknown conversation template {name!r}; use one of: {', '.join(CONVERSATIONS)}")
    return CONVERSATIONS[name]
