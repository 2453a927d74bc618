"""The bundled small masked-diffusion LM: a character tokenizer and a bidirectional transformer.

The architecture is a plain pre-norm transformer encoder (no causal mask) with learned positions,
trained with the MDLM / LLaDA objective (`dllm_mcmc.small_model.train`). The module is itself a
`Denoiser`: ``model(tokens [B, N]) -> logits [B, N, V]``, position ``i`` predicting token ``i``.

Its trained convention is a prompt left-padded with ``<pad>`` to the trained prompt length
(`CharTokenizer.encode_prompt`, what its codec does), padding it attends to, at absolute positions
``0..N-1``; the codec gives every prompt that one length, so batches of its prompts are never padded.
With an ``attention_mask`` (``False``/0 on padding, as the decoders pass for a list of prompts of
different lengths), padded keys are hidden and positions count from each row's first real token, so a
left-padded row's logits equal those of the row alone: a batch of any prompts gives what each would
alone (which, for a prompt not padded in the trained way, is the model off its training inputs).

Example:
    >>> import torch
    >>> tokenizer = CharTokenizer("ab.")
    >>> model = SmallDLM(SmallConfig(vocab_size=tokenizer.vocab_size, max_length=8, dim=16, layers=1, heads=2),
    ...                  mask_id=tokenizer.mask_id, eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id)
    >>> model(torch.tensor([tokenizer.encode("ab")])).shape
    torch.Size([1, 2, 6])
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

SPECIALS = ("<pad>", "<mask>", "<eos>")


class CharTokenizer:
    """Characters of ``alphabet`` plus ``<pad>`` (0), ``<mask>`` (1) and ``<eos>`` (2)."""

    def __init__(self, alphabet: str) -> None:
        if len(set(alphabet)) != len(alphabet):
            raise ValueError("alphabet must not repeat characters")
        self.alphabet = alphabet
        self.pad_id, self.mask_id, self.eos_id = 0, 1, 2
        self._ids = {char: i + len(SPECIALS) for i, char in enumerate(alphabet)}
        self.vocab_size = len(SPECIALS) + len(alphabet)

    def encode(self, text: str) -> list[int]:
        unknown = sorted(set(text) - set(self._ids))
        if unknown:
            raise ValueError(f"text has characters outside the alphabet: {unknown}")
        return [self._ids[char] for char in text]

    def decode(self, ids) -> str:
        """Characters of ``ids``; specials are dropped, decoding stops at the first ``<eos>``."""
        chars = []
        for i in (int(i) for i in ids):
            if i == self.eos_id:
                break
            if i >= len(SPECIALS):
                chars.append(self.alphabet[i - len(SPECIALS)])
        return "".join(chars)

    def encode_prompt(self, text: str, length: int) -> list[int]:
        """``text`` left-padded with ``<pad>`` to ``length`` (every prompt of a batch alike)."""
        ids = self.encode(text)
        if len(ids) > length:
            raise ValueError(f"prompt {text!r} is longer than {length} characters")
        return [self.pad_id] * (length - len(ids)) + ids


@dataclass(frozen=True)
class SmallConfig:
    vocab_size: int
    max_length: int
    dim: int = 192
    layers: int = 6
    heads: int = 6
    mlp_ratio: int = 4

    def as_dict(self) -> dict:
        return asdict(self)


class SmallDLM(nn.Module):
    """A bidirectional transformer mask predictor (the bundled model's architecture)."""

    def __init__(self, config: SmallConfig, mask_id: int, eos_id: int | None = None, pad_id: int | None = None):
        super().__init__()
        self.config = config
        self.mask_id, self.eos_id, self.pad_id = mask_id, eos_id, pad_id
        self.vocab_size = config.vocab_size
        self.embed = nn.Embedding(config.vocab_size, config.dim)
        self.position = nn.Embedding(config.max_length, config.dim)
        layer = nn.TransformerEncoderLayer(
            config.dim, config.heads, config.mlp_ratio * config.dim, dropout=0.0,
            activation="gelu", batch_first=True, norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.dim)
        self.head = nn.Linear(config.dim, config.vocab_size)

    def forward(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if tokens.shape[1] > self.config.max_length:
            raise ValueError(f"tokens: length {tokens.shape[1]} exceeds max_length {self.config.max_length}")
        if attention_mask is None:
            positions = torch.arange(tokens.shape[1], device=tokens.device)[None]
        else:  # counted from each row's first real token: a left-padded row sees the positions it has alone
            positions = (attention_mask.long().cumsum(-1) - 1).clamp_min(0)
        hidden = self.embed(tokens) + self.position(positions)
        padding = None if attention_mask is None else attention_mask == 0
        return self.head(self.norm(self.encoder(hidden, src_key_padding_mask=padding)))
