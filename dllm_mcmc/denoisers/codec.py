"""`TextCodec`: how a loaded model turns prompt text into ids and response ids into text.

A denoiser works on ids; the evaluation runner, the demo and notebooks work on text. The codec is the
one place that knows a model's tokenizer conventions: the bundled small model left-pads prompts to its
trained prompt length, transformers tokenizers wrap the prompt in their chat template when they have one.

Example:
    >>> from dllm_mcmc import load_model
    >>> denoiser, codec = load_model("tasks-small")
    >>> codec.gen_length, codec.decode(codec.encode("7+5*3=")[-2:].tolist())
    (16, '3=')
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class TextCodec:
    """Text in, ids out, and back.

    Attributes:
        encode: prompt text -> ``[P]`` ids, ready to decode after (chat template or padding applied).
        decode: response ids -> text (stops at EOS, drops special tokens).
        tokenizer: the underlying tokenizer object (``None`` where the model has none).
        gen_length: the model's natural response length (the bundled model's trained length), or
            ``None`` where no length suits every task.
        config: the model directory's ``config.json`` as a dict (empty where there is none).
    """

    encode: Callable[[str], torch.Tensor]
    decode: Callable[[Sequence[int]], str]
    tokenizer: Any = None
    gen_length: int | None = None
    config: dict = field(default_factory=dict)


def chat_prompt(tokenizer: Any, text: str) -> str:
    """``text`` as a single user turn in ``tokenizer``'s chat template, ready for the assistant's
    reply; ``text`` unchanged when the tokenizer has no template (a base model).

    >>> class Plain:
    ...     chat_template = None
    >>> chat_prompt(Plain(), "What is 2+2?")
    'What is 2+2?'
    """
    if not getattr(tokenizer, "chat_template", None):
        return text
    return tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                         add_generation_prompt=True)


def transformers_codec(tokenizer: Any, eos_id: int | None, config: dict | None = None,
                       name: str = "the model") -> TextCodec:
    """A codec over a transformers tokenizer: the chat template when it has one, EOS cut on the way back.

    With ``tokenizer=None`` (none saved beside the weights) the model still loads; ``encode`` and
    ``decode`` then refuse with a message naming ``name``.
    """
    if tokenizer is None:
        def refuse(_: Any) -> Any:
            raise ValueError(f"{name}: no tokenizer saved beside the weights; pass token ids instead of text")

        return TextCodec(refuse, refuse, None, None, dict(config or {}))
    templated = getattr(tokenizer, "chat_template", None) is not None

    def encode(text: str) -> torch.Tensor:
        # A chat template already holds the special tokens the model was tuned with.
        ids = tokenizer(chat_prompt(tokenizer, text), add_special_tokens=not templated)["input_ids"]
        return torch.tensor(ids)

    def decode(ids: Sequence[int]) -> str:
        ids = [int(i) for i in ids]
        if eos_id is not None and eos_id in ids:
            ids = ids[: ids.index(eos_id)]
        return tokenizer.decode(ids, skip_special_tokens=True)

    return TextCodec(encode, decode, tokenizer, None, dict(config or {}))
