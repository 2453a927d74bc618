"""The bundled small masked-diffusion LM (architecture, tokenizer, training)."""

from .small import CharTokenizer, SmallConfig, SmallDLM

__all__ = ["CharTokenizer", "SmallConfig", "SmallDLM"]

from .load import bundled_models, load_model, load_small_model  # noqa: E402

__all__ += ["bundled_models", "load_model", "load_small_model"]
