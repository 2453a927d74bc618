"""Native LLaDA-8B and Dream-7B: the architectures in plain torch, loaded from local safetensors.

No code from the checkpoint directory runs and transformers' modeling classes are not involved, so
the result does not depend on the installed transformers version (see ``docs/checkpoints.md``).

Example:
    >>> from dllm_mcmc.denoisers.native import load_native
    >>> denoiser = load_native("/models/LLaDA-8B-Instruct", dtype=torch.bfloat16)  # doctest: +SKIP
"""

from dllm_mcmc.denoisers.native.checkpoint import CheckpointError, load_tensors, read_config, tensor_files
from dllm_mcmc.denoisers.native.denoiser import (
    NativeDenoiser,
    architecture_of,
    is_native_checkpoint,
    load_native,
    load_tokenizer,
)
from dllm_mcmc.denoisers.native.transformer import ArchitectureConfig, BidirectionalTransformer

__all__ = [
    "ArchitectureConfig",
    "BidirectionalTransformer",
    "CheckpointError",
    "NativeDenoiser",
    "architecture_of",
    "is_native_checkpoint",
    "load_native",
    "load_tensors",
    "load_tokenizer",
    "read_config",
    "tensor_files",
]
