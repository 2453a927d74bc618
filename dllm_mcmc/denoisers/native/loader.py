"""`load_native`: a LLaDA, Dream or WeDLM checkpoint directory as a `Denoiser`, without remote code.

The architecture is recognised from ``config.json`` (``model_type`` or ``architectures``), the
weights are read from local safetensors into a `BidirectionalTransformer` built on the ``meta``
device (no random initialisation of 8B parameters, no second copy), and the tokenizer, when its
files are there, is loaded by transformers' built-in classes only (``trust_remote_code=False``):
tokenizers are data, and Dream's ``tokenization_dream.py`` is never imported. LLaDA and Dream give a
`NativeDenoiser`, WeDLM a `WeDLMDenoiser` (causal stack, reordered canvases, prefix cache).

Example:
    >>> denoiser = load_native("/models/LLaDA-8B-Instruct", dtype=torch.bfloat16, device="cuda")  # doctest: +SKIP
    >>> denoiser.mask_id, denoiser.vocab_size                                                       # doctest: +SKIP
    (126336, 126464)
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from dllm_mcmc.denoisers.native import dream, llada, wedlm
from dllm_mcmc.denoisers.native.checkpoint import CheckpointError, load_tensors, read_config, stored_dtype
from dllm_mcmc.denoisers.native.transformer import BidirectionalTransformer
from dllm_mcmc.denoisers.native.wedlm import WeDLMDenoiser
from dllm_mcmc.denoisers.native.wrapper import NativeDenoiser

ARCHITECTURES: dict[str, ModuleType] = {"llada": llada, "dream": dream, "wedlm": wedlm}
_LABELS = {"llada": "LLaDA", "dream": "Dream", "wedlm": "WeDLM"}


def architecture_of(config: dict) -> str | None:
    """``"llada"``, ``"dream"``, ``"wedlm"`` or ``None``, from a ``config.json``'s ``model_type`` or
    ``architectures``.

    >>> architecture_of({"model_type": "Dream"}), architecture_of({"architectures": ["LLaDAModelLM"]})
    ('dream', 'llada')
    >>> architecture_of({"model_type": "wedlm", "architectures": ["WeDLMForCausalLM"]})
    'wedlm'
    """
    for name, module in ARCHITECTURES.items():
        if config.get("model_type") in module.MODEL_TYPES:
            return name
        if any(a in module.ARCHITECTURES for a in config.get("architectures") or ()):
            return name
    return None


def is_native_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is a directory whose ``config.json`` names LLaDA, Dream or WeDLM."""
    path = Path(path)
    if not (path / "config.json").is_file():
        return False
    try:
        return architecture_of(read_config(path)) is not None
    except (ValueError, OSError):
        return False


@contextmanager
def _quiet(transformers):
    # AutoTokenizer parses config.json as a generic config and warns about its model type and
    # model fields (rope_scaling...); the fallbacks warn that the saved class is another: both are
    # expected here and say nothing about the tokenizer.
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        transformers.logging.set_verbosity(verbosity)


def load_tokenizer(path: str | Path, architecture: str | None = None):
    """The tokenizer saved in ``path`` through transformers' built-in classes, or ``None`` if none is saved.

    ``AutoTokenizer`` comes first. A ``tokenizer_config.json`` naming a class that only remote code
    defines (Dream's ``DreamTokenizer``) makes it refuse; then the files are read by the built-in class
    they fit: ``tokenizer.json`` by ``PreTrainedTokenizerFast``, Dream's or WeDLM's ``vocab.json`` + ``merges.txt``
    (Qwen2's byte-level BPE) by ``Qwen2Tokenizer``. Special tokens and the chat template come from
    ``tokenizer_config.json`` either way.
    """
    import transformers

    path = Path(path)
    if not any((path / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.json")):
        return None
    # False, not the default None: with None, transformers asks on a terminal whether to run the
    # directory's code; False refuses without asking.
    options = dict(local_files_only=True, trust_remote_code=False)
    fallbacks: list[Any] = []  # tokenizer classes, each with a from_pretrained
    if (path / "tokenizer.json").is_file():
        fallbacks.append(transformers.PreTrainedTokenizerFast)
    if architecture in ("dream", "wedlm") and (path / "vocab.json").is_file() and (path / "merges.txt").is_file():
        fallbacks.append(getattr(transformers, "Qwen2TokenizerFast", None) or transformers.Qwen2Tokenizer)
    first_error = None
    for cls in [transformers.AutoTokenizer, *fallbacks]:
        try:
            with _quiet(transformers):
                return cls.from_pretrained(path, **options)
        except (ValueError, OSError, KeyError, TypeError) as error:
            first_error = first_error or error
    raise ValueError(f"{path}: the saved tokenizer cannot be loaded without running the directory's code "
                     f"({first_error})")


def load_native(
    path: str | Path,
    dtype: torch.dtype | str | None = None,
    device: str | torch.device | None = None,
    mask_id: int | None = None,
    kv_cache: bool | None = None,
) -> NativeDenoiser:
    """Load a LLaDA, Dream or WeDLM directory (``config.json``, safetensors weights, tokenizer files if any).

    Args:
        path: the local directory; nothing is downloaded and no code in it is run.
        dtype: parameter dtype, or its name (``"bfloat16"``, as run configs give it); ``None``: the dtype
            the embedding is stored in. Logits are always float32.
        device: where the parameters go (``None``: CPU); tensors are read straight onto it.
        mask_id: the mask token's id, instead of ``config.json``'s ``mask_token_id``. WeDLM's released
            configs leave it null; without this argument WeDLM then gets
            `dllm_mcmc.denoisers.native.wedlm.FALLBACK_MASK_ID` (151665, what WeDLM's engine uses), with a
            warning. ``denoiser.mask_id_source`` says which: ``"argument"``, ``"config"`` or ``"fallback"``.
        kv_cache: WeDLM only: the exact prefix cache of `WeDLMDenoiser` (``None``: on).

    Raises:
        ValueError: an unknown architecture, an unsupported option, or a checkpoint that does not
            match its config (`CheckpointError` names the tensor or file).

    Example:
        >>> denoiser = load_native("/models/Dream-v0-Instruct-7B", torch.bfloat16, "cuda")  # doctest: +SKIP
        >>> denoiser.config.kv_heads, denoiser.config.shift_logits                          # doctest: +SKIP
        (4, True)
        >>> wedlm = load_native("/models/WeDLM-8B-Instruct", "bfloat16", "cuda")            # doctest: +SKIP
        >>> wedlm.mask_id, wedlm.mask_id_source                                             # doctest: +SKIP
        (151665, 'fallback')
    """
    path = Path(path)
    if isinstance(dtype, str):
        named = getattr(torch, dtype.removeprefix("torch."), None)
        if not isinstance(named, torch.dtype) or not named.is_floating_point:
            raise ValueError(f"dtype: {dtype!r} is not a torch floating dtype")
        dtype = named
    raw = read_config(path)
    architecture = architecture_of(raw)
    if architecture is None:
        known = ", ".join(f"{_LABELS[name]} ({', '.join(module.MODEL_TYPES + module.ARCHITECTURES)})"
                          for name, module in ARCHITECTURES.items())
        raise ValueError(f"{path}: config.json describes model_type={raw.get('model_type')!r}, "
                         f"architectures={raw.get('architectures')!r}; the native loader knows {known}")
    if kv_cache is not None and architecture != "wedlm":
        raise ValueError(f"kv_cache: only WeDLM directories have a prefix cache ({path} is {_LABELS[architecture]})")
    if mask_id is not None:
        if isinstance(mask_id, bool) or not isinstance(mask_id, int) or mask_id < 0:
            raise ValueError(f"mask_id: expected a non-negative int, got {mask_id!r}")
        raw, source = {**raw, "mask_token_id": mask_id}, "argument"
    else:
        source = wedlm.mask_id_source(raw)
    spec = ARCHITECTURES[architecture]
    config = spec.architecture_config(raw)
    names = spec.tensor_names(config)
    with torch.device("meta"):
        model = BidirectionalTransformer(config)
    shapes = {name: tuple(p.shape) for name, p in model.state_dict().items()}
    unused = sorted(set(shapes) - set(names.values()))
    if unused:  # a mapping bug, not a user error
        raise AssertionError(f"{architecture} tensor names leave {unused[0]!r} unloaded")
    if dtype is None:
        embedding = next(name for name, target in names.items() if target == "embed.weight")
        dtype = stored_dtype(path, embedding)
    tensors = load_tensors(path, names, shapes, dtype=dtype, device=device)
    model.load_state_dict(tensors, strict=True, assign=True)
    tokenizer = load_tokenizer(path, architecture)
    if architecture != "wedlm":
        return NativeDenoiser(model, tokenizer, architecture, source)
    if source == "fallback":
        warnings.warn(f"{path}: config.json has no mask_token_id; using {config.mask_id}, the id WeDLM's engine "
                      f"falls back to (pass mask_id= to choose another)", stacklevel=2)
    return WeDLMDenoiser(model, tokenizer, architecture, source, kv_cache=True if kv_cache is None else kv_cache)


__all__ = ["ARCHITECTURES", "CheckpointError", "NativeDenoiser", "WeDLMDenoiser", "architecture_of",
           "is_native_checkpoint", "load_native", "load_tokenizer"]
