"""Native LLaDA-8B, Dream-7B and WeDLM-7B/8B: the architectures in plain torch, loaded from local safetensors.

No code from the checkpoint directory runs and transformers' modeling classes are not involved, so
the result does not depend on the installed transformers version (see ``docs/checkpoints.md``).

- LLaDA and Dream are bidirectional stacks (`BidirectionalTransformer`), wrapped as a `NativeDenoiser`.
- WeDLM (arXiv 2512.22737) is a causal Qwen3 / Qwen2.5 stack decoding in any order by reordering each
  canvas (observed tokens first, then masks, each token keeping its logical position), wrapped as a
  `WeDLMDenoiser` with an exact prefix key-value cache (`PrefixCache`).
- Every native denoiser takes ``logit_positions`` (a 1-D index shared by the rows) to run the output
  head only where logits are needed.

Modules: ``transformer`` (the stack), ``checkpoint`` (safetensors reading), ``llada`` / ``dream`` / ``wedlm``
(config fields and tensor names; ``wedlm`` also the denoiser), ``reorder`` and ``prefix_cache`` (WeDLM's
reordering and cache), ``wrapper`` (`NativeDenoiser`), ``loader`` (`load_native`).

Example:
    >>> from dllm_mcmc.denoisers.native import load_native
    >>> denoiser = load_native("/models/LLaDA-8B-Instruct", dtype=torch.bfloat16)  # doctest: +SKIP
    >>> wedlm = load_native("/models/WeDLM-8B-Instruct", dtype=torch.bfloat16)     # doctest: +SKIP
"""

from dllm_mcmc.denoisers.native.checkpoint import CheckpointError, load_tensors, read_config, tensor_files
from dllm_mcmc.denoisers.native.loader import architecture_of, is_native_checkpoint, load_native, load_tokenizer
from dllm_mcmc.denoisers.native.prefix_cache import CacheStats, PrefixCache
from dllm_mcmc.denoisers.native.transformer import ArchitectureConfig, BidirectionalTransformer, Transformer
from dllm_mcmc.denoisers.native.wedlm import FALLBACK_MASK_ID, WeDLMDenoiser
from dllm_mcmc.denoisers.native.wrapper import NativeDenoiser

__all__ = [
    "FALLBACK_MASK_ID",
    "ArchitectureConfig",
    "BidirectionalTransformer",
    "CacheStats",
    "CheckpointError",
    "NativeDenoiser",
    "PrefixCache",
    "Transformer",
    "WeDLMDenoiser",
    "architecture_of",
    "is_native_checkpoint",
    "load_native",
    "load_tensors",
    "load_tokenizer",
    "read_config",
    "tensor_files",
]
