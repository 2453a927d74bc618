"""The decoder-only transformer shared by LLaDA, Dream and WeDLM, in plain torch.

The first two released 7-8B masked diffusion LMs are autoregressive decoder architectures run without
the causal mask: LLaDA (Nie et al. 2025, "Large Language Diffusion Models", arXiv 2502.09992) is a
Llama-style stack (RMSNorm, rotary positions, SiLU-gated MLP, no biases), Dream (Ye et al. 2025,
"Dream 7B: Diffusion Large Language Models", arXiv 2508.15487) is Qwen2.5-7B's stack (the same, plus
query/key/value biases and grouped-query attention) that keeps the autoregressive convention that
the logits computed at position ``j - 1`` predict token ``j``. WeDLM (Liu et al. 2025, arXiv
2512.22737) keeps its base model's causal attention (``causal=True``) and, in its Qwen3 variant, the
per-head RMSNorm of queries and keys (``qk_norm=True``); its any-order decoding is a reordering of the
input built on top of this stack (`dllm_mcmc.denoisers.native.wedlm`).

Numerics follow the reference implementations: RMSNorm normalises in float32 and scales in the
model dtype; rotary angles are built in float32 from the positions at every call (there is no
``inv_freq`` buffer that a loader could leave uninitialised) and the rotation is applied in float32
(LLaDA's ``rope_full_precision``); ``qk_norm`` normalises each query and key head over ``head_dim``
before the rotation, as Qwen3 does; attention is `scaled_dot_product_attention`, with a key-padding
mask, non-causal unless ``config.causal``.

Positions and padding: without an ``attention_mask`` position ``j`` is ``j``. With one, positions
count from each row's first valid token (``cumsum(mask) - 1``, as Dream's own generation code does),
padded keys are hidden from every query, and for shifted models the first valid position reuses its
own logits (as position 0 does unpadded). A left-padded row then yields, at its valid positions,
the logits of the same row unpadded: what the samplers rely on when they batch prompts of different
lengths (a list of prompts, see ``docs/decoding.md``). LLaDA's own code counts positions from column 0
of the padded row; the two agree whenever there is no padding. A causal stack with padding hides padded
keys too, each query still seeing itself. Explicit per-row ``positions`` replace this rule (WeDLM passes
each token's logical position while the tokens sit in another order).

Logits only where needed: ``logit_positions`` (a 1-D index shared by all rows) runs the final norm and
the output head at those sequence indices only and returns ``[B, K, V]``; for LLaDA-8B at 128 + 256
tokens the full float32 logits are about 194 MB (185 MiB) per row.

A causal stack can keep each layer's keys and values (``keep_kv``) and take them back (``past``), so a
prefix computed once is not recomputed (`BidirectionalTransformer.hidden_states`,
`dllm_mcmc.denoisers.native.prefix_cache`).

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
    """The shape and constants of a decoder-only stack (bidirectional unless ``causal``).

    Attributes:
        hidden: model width; layers: blocks; heads / kv_heads: query and key-value heads (grouped-query
        attention when ``kv_heads < heads``); head_dim: width of one head; intermediate: MLP width;
        vocab: rows of the embedding and of the output head (the logits' last dimension);
        rope_theta: rotary base; rms_eps: RMSNorm epsilon; qkv_bias: biases on the query, key and value
        projections (Dream); shift_logits: output position ``j`` reads the logits computed at ``j - 1``
        (Dream); qk_norm: per-head RMSNorm (over ``head_dim``, weights ``[head_dim]``) of queries and keys
        before the rotation (Qwen3, WeDLM-8B); causal: each position attends to itself and the positions
        before it (WeDLM); mask_id, eos_id, pad_id: the special ids.
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
    qk_norm: bool = False
    causal: bool = False
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


KeyValues = tuple[torch.Tensor, torch.Tensor]
"""One layer's keys and values, ``[B, kv_heads, S, head_dim]`` each, keys already rotated."""


def causal_mask(queries: int, past: int, device: torch.device) -> torch.Tensor:
    """``[queries, past + queries]`` bool: query ``i`` (sequence index ``past + i``) sees keys ``<= past + i``.

    >>> causal_mask(2, 1, torch.device("cpu")).int().tolist()
    [[1, 1, 0], [1, 1, 1]]
    """
    keys = torch.arange(past + queries, device=device)
    return keys[None, :] <= past + torch.arange(queries, device=device)[:, None]


def attention_bias(length: int, attention_mask: torch.Tensor | None, causal: bool, past: int = 0,
                   device: torch.device | None = None) -> tuple[torch.Tensor | None, bool]:
    """The ``attn_mask`` and ``is_causal`` arguments of `scaled_dot_product_attention` for one stack call.

    Bidirectional: padded keys hidden (``[B, 1, 1, N]``) or nothing. Causal without padding or past: SDPA's
    own causal flag. Causal with padding: causal and padded keys hidden, each query always seeing itself
    so a padded query's softmax is never empty (an empty one would give NaN, and NaN times a zero weight
    is still NaN in the next layer). Causal after ``past`` cached keys: `causal_mask`, no padding.
    """
    if not causal:
        return (None if attention_mask is None else attention_mask.bool()[:, None, None, :]), False
    if past:
        if attention_mask is not None:
            raise ValueError("attention_mask: not supported together with cached keys (past)")
        return causal_mask(length, past, device or torch.device("cpu")), False
    if attention_mask is None:
        return None, True
    allowed = causal_mask(length, 0, attention_mask.device)
    keys = attention_mask.bool()[:, None, None, :]
    return (allowed & keys) | torch.eye(length, dtype=torch.bool, device=attention_mask.device), False


class Attention(nn.Module):
    def __init__(self, config: ArchitectureConfig) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = config.heads, config.kv_heads, config.head_dim
        self.q = nn.Linear(config.hidden, config.heads * config.head_dim, bias=config.qkv_bias)
        self.k = nn.Linear(config.hidden, config.kv_heads * config.head_dim, bias=config.qkv_bias)
        self.v = nn.Linear(config.hidden, config.kv_heads * config.head_dim, bias=config.qkv_bias)
        self.o = nn.Linear(config.heads * config.head_dim, config.hidden, bias=False)
        # Registered only when used, so LLaDA / Dream state dicts keep exactly their tensors.
        self.q_norm = RMSNorm(config.head_dim, config.rms_eps) if config.qk_norm else None
        self.k_norm = RMSNorm(config.head_dim, config.rms_eps) if config.qk_norm else None

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | None,
                is_causal: bool = False, past: KeyValues | None = None) -> tuple[torch.Tensor, KeyValues]:
        batch, length, _ = x.shape
        q = self.q(x).view(batch, length, self.heads, self.head_dim)
        k = self.k(x).view(batch, length, self.kv_heads, self.head_dim)
        v = self.v(x).view(batch, length, self.kv_heads, self.head_dim).transpose(1, 2)
        if self.q_norm is not None and self.k_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)  # per head, before the rotation (Qwen3)
        q, k = _rotate(q.transpose(1, 2), cos, sin), _rotate(k.transpose(1, 2), cos, sin)
        if past is not None:
            # A past shared by every row may come with batch 1: expand is a view, cat copies once.
            k = torch.cat([past[0].expand(batch, -1, -1, -1), k], dim=2)
            v = torch.cat([past[1].expand(batch, -1, -1, -1), v], dim=2)
        present = (k, v)
        if self.kv_heads != self.heads:
            # Query head h reads key-value head h // group (the grouping of Llama, Qwen2 and OLMo);
            # repeating works on every supported torch, unlike SDPA's enable_gqa (torch >= 2.5).
            group = self.heads // self.kv_heads
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)
        return self.o(out.transpose(1, 2).reshape(batch, length, self.heads * self.head_dim)), present


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

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | None,
                is_causal: bool = False, past: KeyValues | None = None) -> tuple[torch.Tensor, KeyValues]:
        attended, present = self.attn(self.attn_norm(x), cos, sin, mask, is_causal, past)
        x = x + attended
        return x + self.mlp(self.mlp_norm(x)), present


class BidirectionalTransformer(nn.Module):
    """Embedding, pre-norm blocks, final RMSNorm and an untied output head; itself a `Denoiser`.

    ``model(tokens [B, N], attention_mask [B, N] or None) -> float32 logits [B, N, vocab]``, position
    ``j`` predicting token ``j`` (shifted models are unshifted here). Bidirectional unless
    ``config.causal`` (the name is kept from when it was only LLaDA's and Dream's; `Transformer` is the
    same class). The forward pass has no host-device synchronisation and no branching on tensor values.
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

    def forward(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                positions: torch.Tensor | None = None,
                logit_positions: torch.Tensor | None = None) -> torch.Tensor:
        """Float32 logits ``[B, N, V]``, or ``[B, K, V]`` at the ``K`` sequence indices ``logit_positions``.

        Args:
            tokens: ``[B, N]`` ids.
            attention_mask: ``[B, N]``, ``False`` / 0 on left padding (hidden from every query).
            positions: ``[B or 1, N]`` rotary positions; ``None``: `token_positions`.
            logit_positions: a 1-D LongTensor of indices in ``[0, N)`` shared by all rows; output ``k``
                is what output ``logit_positions[k]`` of the full call would be (for a shifted model the
                head runs at the index before it, under `shift_logits`' rule). Only those rows of the
                head are computed. Indices are not range-checked here (that would read the device).
        """
        if positions is None:
            positions = token_positions(tokens, attention_mask)
        hidden, _ = self.hidden_states(tokens, positions, attention_mask)
        if logit_positions is None:
            logits = self.head(self.norm(hidden)).float()
            return shift_logits(logits, attention_mask) if self.config.shift_logits else logits
        sources = logit_sources(logit_positions, attention_mask) if self.config.shift_logits else logit_positions
        return self.logits_at(hidden, sources)

    def hidden_states(self, tokens: torch.Tensor, positions: torch.Tensor,
                      attention_mask: torch.Tensor | None = None, *, past: list[KeyValues] | None = None,
                      keep_kv: bool = False) -> tuple[torch.Tensor, list[KeyValues]]:
        """The last block's output ``[B, N, hidden]`` (before the final norm) and, if ``keep_kv``, each layer's
        keys and values (``[]`` otherwise: holding them all would keep every layer's memory alive).

        ``past``: per layer, the keys and values of ``S`` tokens before ``tokens`` (batch ``B`` or 1, a
        causal stack only); ``tokens`` are then sequence indices ``S..S+N-1``, and the kept keys and values
        cover all ``S + N``. ``positions`` are the rotary positions of ``tokens`` only.
        """
        if past is not None and not self.config.causal:
            raise ValueError("past: cached keys and values need a causal stack (config.causal)")
        past_length = 0 if not past else past[0][0].shape[2]
        cos, sin = rotary_angles(positions, self.config.head_dim, self.config.rope_theta)
        mask, is_causal = attention_bias(tokens.shape[1], attention_mask, self.config.causal, past_length,
                                         tokens.device)
        x = self.embed(tokens)
        kept: list[KeyValues] = []
        for i, block in enumerate(self.blocks):
            x, present = block(x, cos, sin, mask, is_causal, None if not past else past[i])
            if keep_kv:
                kept.append(present)
        return x, kept

    def logits_at(self, hidden: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Float32 logits ``[B, K, V]`` of ``hidden [B, N, H]`` at ``index`` (``[K]`` or ``[B or 1, K]``).

        The final norm and the head run on the gathered rows only.
        """
        if index.dim() == 1:
            index = index[None]
        index = index.expand(hidden.shape[0], -1)
        picked = hidden.gather(1, index[..., None].expand(-1, -1, hidden.shape[-1]))
        return self.head(self.norm(picked)).float()


Transformer = BidirectionalTransformer


def logit_sources(index: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """For a shifted model, the index whose logits output ``index`` takes: ``j - 1``, or ``j`` itself for
    position 0 and for each row's first valid token (`shift_logits`' rule). ``[K]`` or ``[B, K]``.

    >>> logit_sources(torch.tensor([0, 1, 3])).tolist()
    [0, 0, 2]
    >>> logit_sources(torch.tensor([1, 2]), torch.tensor([[0, 1, 1], [1, 1, 1]])).tolist()
    [[1, 1], [0, 1]]
    """
    before = (index - 1).clamp_min(0)
    own = index == 0
    if attention_mask is None:
        return torch.where(own, index, before)
    own = own[None] | (attention_mask[:, before] == 0)
    return torch.where(own, index[None], before[None])


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
