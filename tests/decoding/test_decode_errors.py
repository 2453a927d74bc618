"""Bad input raises a ValueError that names the offending argument."""

import pytest
import torch
from conftest import seeded

from dllm_mcmc import decode


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"position_temperature": 0.0, "rule": "stochastic"}, "position_temperature"),
        ({"rule": "greedy"}, "rule"),
        ({"position_score": "loss", "rule": "stochastic"}, "position_score"),
        ({"block_length": 3}, "block_length"),
        ({"block_length": 0}, "block_length"),
        ({"tokens_per_step": 0}, "tokens_per_step"),
        ({"num_samples": 0}, "num_samples"),
        ({"suppress_eos": True}, "eos"),
        ({"generator": 7}, "generator"),
    ],
)
def test_bad_options_name_the_argument(toy, kwargs, name):
    with pytest.raises(ValueError, match=name):
        decode(toy, None, 4, **kwargs)


def test_gen_length_must_be_positive(toy):
    with pytest.raises(ValueError, match="gen_length"):
        decode(toy, None, 0)


def test_prompt_with_mask_id_is_refused(toy):
    with pytest.raises(ValueError, match="prompt contains the mask id"):
        decode(toy, torch.tensor([1, toy.mask_id]), 4)


def test_prompt_of_wrong_type_or_shape_is_refused(toy):
    with pytest.raises(ValueError, match="prompt"):
        decode(toy, torch.tensor([0.5]), 4)
    with pytest.raises(ValueError, match="prompt"):
        decode(toy, torch.zeros(3, 0, dtype=torch.long), 4, num_samples=2)


class OnDevice:
    """A denoiser that says it computes on another device."""

    mask_id, vocab_size = 3, 3
    device = torch.device("meta")

    def __call__(self, tokens, attention_mask=None):
        raise AssertionError("must not be called")


def test_prompt_on_another_device_than_the_model():
    with pytest.raises(ValueError, match="prompt is on cpu"):
        decode(OnDevice(), torch.tensor([1, 2]), 4)


class Broken:
    mask_id, vocab_size = 3, 3

    def __init__(self, fault):
        self.fault = fault

    def __call__(self, tokens, attention_mask=None):
        if self.fault == "shape":
            return torch.zeros(tokens.shape[0], tokens.shape[1], self.vocab_size + 1)
        if self.fault == "type":
            return tokens.tolist()
        logits = torch.zeros(tokens.shape[0], tokens.shape[1], self.vocab_size)
        if (tokens != self.mask_id).sum() >= tokens.shape[0] * 2:  # NaN from step 2 on
            logits[0, -1, 0] = float("nan")
        return logits


@pytest.mark.parametrize("fault,message", [("shape", "shape"), ("type", "logits tensor"), ("nan", "NaN.*step 2")])
def test_a_misbehaving_model_is_reported(fault, message):
    with pytest.raises(ValueError, match=message) as error:
        decode(Broken(fault), None, 4, num_samples=2, generator=seeded(0))
    assert "denoiser" in str(error.value)
