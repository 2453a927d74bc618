"""`load_native`: a LLaDA or Dream checkpoint directory as a `Denoiser`, without transformers' remote code.

The architecture is recognised from ``config.json`` (``model_type`` or ``architectures``), the
weights are read from local safetensors into a `BidirectionalTransformer` built on the ``meta``
device (no random initialisation of 8B parameters, no second copy), and the tokenizer, when its
files are there, is loaded by transformers' built-in classes only (``trust_remote_code=False``):
tokenizers are data, and Dream's ``tokenization_dream.py`` is never imported.

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

from dllm_mcmc.denoisers.native import dream, llada
from dllm_mcmc.denoisers.native.checkpoint import CheckpointError, load_tensors, read_config, stored_dtype
from dllm_mcmc.denoisers.native.transformer import ArchitectureConfig, BidirectionalTransformer

ARCHITECTURES: dict[str, ModuleType] = {"llada": llada, "dream": dream}


def architecture_of(config: dict) -> str | None:
    """``"llada"``, ``"dream"`` or ``None``, from a ``config.json``'s ``model_type`` or ``architectures``.

    >>> architecture_of({"model_type": "Dream"}), architecture_of({"architectures": ["LLaDAModelLM"]})
    ('dream', 'llada')
    """
    for name, module in ARCHITECTURES.items():
        if config.get("model_type") in module.MODEL_TYPES:
            return name
        if any(a in module.ARCHITECTURES for a in config.get("architectures") or ()):
            return name
    return None


def is_native_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is a directory whose ``config.json`` names LLaDA or Dream."""
    path = Path(path)
    if not (path / "config.json").is_file():
        return False
    try:
        return architecture_of(read_config(path)) is not None
    except (ValueError, OSError):
        return False


class NativeDenoiser:
    """A `BidirectionalTransformer` with its tokenizer: ``denoiser(tokens, attention_mask) -> float32 logits``.

    Attributes:
        model: the module (eval mode, no gradients); architecture: ``"llada"`` or ``"dream"``;
        config: its `ArchitectureConfig`; tokenizer: a transformers tokenizer or ``None``;
        mask_id, eos_id, pad_id, vocab_size: from ``config.json``.
    """

    def __init__(self, model: BidirectionalTransformer, tokenizer=None, architecture: str | None = None) -> None:
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.architecture = architecture
        self.config: ArchitectureConfig = model.config
        self.mask_id, self.eos_id, self.pad_id = model.mask_id, model.eos_id, model.pad_id
        self.vocab_size = model.vocab_size

    @property
    def device(self) -> torch.device:
        return self.model.embed.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.embed.weight.dtype

    @torch.no_grad()
    def __call__(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(tokens, attention_mask)


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
    they fit: ``tokenizer.json`` by ``PreTrainedTokenizerFast``, Dream's ``vocab.json`` + ``merges.txt``
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
    if architecture == "dream" and (path / "vocab.json").is_file() and (path / "merges.txt").is_file():
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
) -> NativeDenoiser:
    """Load a LLaDA or Dream directory (``config.json``, safetensors weights, tokenizer files if any).

    Args:
        path: the local directory; nothing is downloaded and no code in it is run.
        dtype: parameter dtype, or its name (``"bfloat16"``, as run configs give it); ``None``: the dtype
            the embedding is stored in. Logits are always float32.
        device: where the parameters go (``None``: CPU); tensors are read straight onto it.

    Raises:
        ValueError: an unknown architecture, an unsupported option, or a checkpoint that does not
            match its config (`CheckpointError` names the tensor or file).

    Example:
        >>> denoiser = load_native("/models/Dream-v0-Instruct-7B", torch.bfloat16, "cuda")  # doctest: +SKIP
        >>> denoiser.config.kv_heads, denoiser.config.shift_logits                          # doctest: +SKIP
        (4, True)
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
        raise ValueError(
            f"{path}: config.json describes model_type={raw.get('model_type')!r}, "
            f"architectures={raw.get('architectures')!r}; the native loader knows LLaDA "
            f"({', '.join(llada.MODEL_TYPES + llada.ARCHITECTURES)}) and Dream "
            f"({', '.join(dream.MODEL_TYPES + dream.ARCHITECTURES)})"
        )
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
    return NativeDenoiser(model, load_tokenizer(path, architecture), architecture)


__all__ = ["ARCHITECTURES", "CheckpointError", "NativeDenoiser", "architecture_of", "is_native_checkpoint",
           "load_native", "load_tokenizer"]
