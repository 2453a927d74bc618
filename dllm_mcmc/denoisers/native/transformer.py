"""The bidirectional decoder-only transformer shared by LLaDA and Dream, in plain torch.

Both released 7-8B masked diffusion LMs are autoregressive decoder architectures run without the
causal mask: LLaDA (Nie et al. 2025, "Large Language Diffusion Models", arXiv 2502.09992) is a
Llama-style stack (RMSNorm, rotary positions, SiLU-gated MLP, no biases), Dream (Ye et al. 2025,
"Dream 7B: Diffusion Large Language Models", arXiv 2508.15487) is Qwen2.5-7B's stack (the same, plus
query/key/value biases and grouped-query attention) that keeps the autoregressive convention that
the logits computed at position ``j - 1`` predict token ``j``.

Numerics follow the reference implementations: RMSNorm normalises in float32 and scales in the
model dtype; rotary angles are built in float32 from the positions at every call (there is no
``inv_freq`` buffer that a loader could leave uninitialised) and the rotation is applied in float32
(LLaDA's ``rope_full_precision``); attention is `scaled_dot_product_attention`, non-causal, with a
key-padding mask.

Positions and padding: without an ``attention_mask`` position ``j`` is ``j``. With one, positions
count from each row's first valid token (``cumsum(mask) - 1``, as Dream's own generation code does),
padded keys are hidden from every query, and for shifted models the first valid position reuses its
own logits (as position 0 does unpadded). A left-padded row then yields, at its valid positions,
the logits of the same row unpadded: what the samplers rely on when they batch prompts of different
lengths (a list of prompts, see ``docs/decoding.md``). LLaDA's own code counts positions from column 0
of the padded row; the two agree whenever there is no padding.

Example:
    >>> config = ArchitectureConfig(hidden=16, layers=1, heads=2, kv_heads=1, head_dim=8,
    ...                             intermediate=32, vocab=11, mask_id=10)
    >>> model = BidirectionalTransformer(config)
    >>> logits = model(torch.tensor([[1, 2, 10, 10]]))
    >>> logits.shape, logits.dtype
    (torch.Size([1, 4, 11]), torch.float32)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class ArchitectureConfig:
    """The shape and constants of a bidirectional decoder-only stack.

    Attributes:
        hidden: model width; layers: blocks; heads / kv_heads: query and key-value heads (grouped-query
        attention when ``kv_heads < heads``); head_dim: width of one head; intermediate: MLP width;
        vocab: rows of the embedding and of the output head (the logits' last dimension);
        rope_theta: rotary base; rms_eps: RMSNorm epsilon; qkv_bias: biases on the query, key and value
        projections (Dream); shift_logits: output position ``j`` reads the logits computed at ``j - 1``
        (Dream); mask_id, eos_id, pad_id: the special ids.
    """

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    mask_id: int
    rope_theta: float = 10000.0
    rms_eps: float = 1e-5
    qkv_bias: bool = False
    shift_logits: bool = False
    eos_id: int | None = None
    pad_id: int | None = None

    def __post_init__(self) -> None:
        for name in ("hidden", "layers", "heads", "kv_heads", "head_dim", "intermediate", "vocab"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be positive, got {getattr(self, name)}")
        if self.heads % self.kv_heads:
            raise ValueError(f"kv_heads: {self.kv_heads} does not divide heads = {self.heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim: rotary positions need an even head width, got {self.head_dim}")


def first_id(value: int | list[int] | None) -> int | None:
    """A special id from a config field that may hold one id or a list of them (the first)."""
    if isinstance(value, (list, tuple)):
        return int(value[0]) if value else None
    return None if value is None else int(value)


class RMSNorm(nn.Module):
    """``weight * x / rms(x)``, the statistics in float32 whatever the model dtype."""

    def __init__(self, width: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        # Cast back before scaling, as Llama / Qwen2 / OLMo do: bf16 results match theirs.
        return self.weight * x32.to(x.dtype)


def token_positions(tokens: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Rotary positions ``[B or 1, N]``: ``0..N-1``, or counted from each row's first valid token.

    Padded positions get 0; nothing attends to them, so their value only has to be finite.

    >>> token_positions(torch.zeros(2, 4, dtype=torch.long), torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]]))
    tensor([[0, 1, 2, 3],
            [0, 0, 0, 1]])
    """
    if attention_mask is None:
        return torch.arange(tokens.shape[1], device=tokens.device)[None]
    return (attention_mask.long().cumsum(-1) - 1).clamp_min(0)


def rotary_angles(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos, sin`` of shape ``[B, 1, N, head_dim]`` in float32 (frequency halves concatenated)."""
    exponents = torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim
    inv_freq = 1.0 / (theta ** exponents)
    angles = positions.float()[..., None] * inv_freq
    angles = torch.cat([angles, angles], dim=-1)[:, None]
    return angles.cos(), angles.sin()


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # Llama / OLMo layout: the first and second halves of each head are the two rotated coordinates.
    x32 = x.float()
    first, second = x32.chunk(2, dim=-1)
    return (x32 * cos + torch.cat([-second, first], dim=-1) * sin).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, config: ArchitectureConfig) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = config.heads, config.kv_heads, config.head_dim
        self.q = nn.Linear(config.hidden, config.heads * config.head_dim, bias=config.qkv_bias)
        self.k = nn.Linear(config.hidden, config.kv_heads * config.head_dim, bias=config.qkv_bias)
        self.v = nn.Linear(config.hidden, config.kv_heads * config.head_dim, bias=config.qkv_bias)
        self.o = nn.Linear(config.heads * config.head_dim, config.hidden, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                key_mask: torch.Tensor | None) -> torch.Tensor:
        batch, length, _ = x.shape
        q = self.q(x).view(batch, length, self.heads, self.head_dim).transpose(1, 2)
        k = self.k(x).view(batch, length, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v(x).view(batch, length, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        if self.kv_heads != self.heads:
            # Query head h reads key-value head h // group (the grouping of Llama, Qwen2 and OLMo);
            # repeating works on every supported torch, unlike SDPA's enable_gqa (torch >= 2.5).
            group = self.heads // self.kv_heads
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask, is_causal=False)
        return self.o(out.transpose(1, 2).reshape(batch, length, self.heads * self.head_dim))


class GatedMLP(nn.Module):
    def __init__(self, config: ArchitectureConfig) -> None:
        super().__init__()
        self.gate = nn.Linear(config.hidden, config.intermediate, bias=False)
        self.up = nn.Linear(config.hidden, config.intermediate, bias=False)
        self.down = nn.Linear(config.intermediate, config.hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Block(nn.Module):
    def __init__(self, config: ArchitectureConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(config.hidden, config.rms_eps)
        self.attn = Attention(config)
        self.mlp_norm = RMSNorm(config.hidden, config.rms_eps)
        self.mlp = GatedMLP(config)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                key_mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin, key_mask)
        return x + self.mlp(self.mlp_norm(x))


class BidirectionalTransformer(nn.Module):
    """Embedding, pre-norm blocks, final RMSNorm and an untied output head; itself a `Denoiser`.

    ``model(tokens [B, N], attention_mask [B, N] or None) -> float32 logits [B, N, vocab]``, position
    ``j`` predicting token ``j`` (shifted models are unshifted here). The forward pass has no
    host-device synchronisation and no branching on tensor values.
    """

    def __init__(self, config: ArchitectureConfig) -> None:
        super().__init__()
        self.config = config
        self.mask_id, self.eos_id, self.pad_id = config.mask_id, config.eos_id, config.pad_id
        self.vocab_size = config.vocab
        self.embed = nn.Embedding(config.vocab, config.hidden)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.norm = RMSNorm(config.hidden, config.rms_eps)
        self.head = nn.Linear(config.hidden, config.vocab, bias=False)

    def forward(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        cos, sin = rotary_angles(token_positions(tokens, attention_mask), self.config.head_dim,
                                 self.config.rope_theta)
        key_mask = None if attention_mask is None else attention_mask.bool()[:, None, None, :]
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x, cos, sin, key_mask)
        logits = self.head(self.norm(x)).float()
        if self.config.shift_logits:
            logits = shift_logits(logits, attention_mask)
        return logits


def shift_logits(logits: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Output position ``j`` takes the logits computed at ``j - 1``; position 0 keeps its own.

    With an ``attention_mask``, every position whose predecessor is padding (each row's first valid
    token) keeps its own logits too, so a left-padded row shifts exactly like the unpadded row.

    >>> raw = torch.arange(4.0).view(1, 4, 1)
    >>> shift_logits(raw).flatten().tolist(), shift_logits(raw, torch.tensor([[0, 1, 1, 1]])).flatten().tolist()
    ([0.0, 0.0, 1.0, 2.0], [0.0, 1.0, 1.0, 2.0])
    """
    shifted = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
    if attention_mask is None:
        return shifted
    after_padding = torch.cat([torch.ones_like(attention_mask[:, :1], dtype=torch.bool),
                               attention_mask[:, :-1] == 0], dim=1)
    return torch.where(after_padding[..., None], logits, shifted)
