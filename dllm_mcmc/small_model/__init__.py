"""The bundled small masked-diffusion LM: architecture and tokenizer (`model`), its loader (`load`),
its training script (`train`) and the weights that ship with the package (``bundled/``)."""

from dllm_mcmc.small_model.load import BUNDLED, bundled_models, load_small_model, small_model_dir
from dllm_mcmc.small_model.model import CharTokenizer, SmallConfig, SmallDLM

__all__ = ["BUNDLED", "CharTokenizer", "SmallConfig", "SmallDLM", "bundled_models", "load_small_model",
           "small_model_dir"]
