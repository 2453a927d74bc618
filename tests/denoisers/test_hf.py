"""`HFDenoiser` with tiny transformers masked LMs built from a config, saved, reloaded offline."""

import os
import subprocess
import sys

import pytest
import torch
from conftest import CountingDenoiser, seeded
from hf_fixtures import char_tokenizer, tiny_model

from dllm_mcmc import HFDenoiser, decode, replay


@pytest.fixture(scope="module")
def tokenizer():
    return char_tokenizer()


@pytest.mark.parametrize("kind", ["bert", "roberta"])
def test_saved_model_reloads_offline_and_decodes(tmp_path, tokenizer, kind):
    model = tiny_model(kind, len(tokenizer))
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    os.environ["HF_HUB_OFFLINE"] = "1"
    denoiser = HFDenoiser.from_pretrained(tmp_path)
    assert denoiser.mask_id == tokenizer.mask_token_id == 2
    assert denoiser.eos_id == 3 and denoiser.pad_id == 0
    assert denoiser.vocab_size == len(tokenizer)
    assert not denoiser.model.training

    prompt = torch.tensor(tokenizer("12+7=")["input_ids"])
    canvas = torch.cat([prompt, torch.full((6,), denoiser.mask_id)])[None]
    in_memory = HFDenoiser(model.eval(), tokenizer=tokenizer)
    assert torch.allclose(denoiser(canvas), in_memory(canvas), atol=1e-6)

    counted = CountingDenoiser(denoiser)
    traj = decode(counted, prompt, 6, rule="entropy", temperature=0.5, block_length=3,
                  num_samples=4, generator=seeded(0))
    assert counted.batch_sizes == [4] * 6
    assert traj.tokens.shape == (4, 6) and (traj.tokens != denoiser.mask_id).all()
    assert torch.isfinite(traj.log_q).all() and (traj.log_q <= 0).all()
    again = replay(denoiser, prompt, traj.tokens, traj.order, traj.config)
    assert torch.allclose(again.log_q, traj.log_q, atol=1e-5)
    assert isinstance(tokenizer.decode(traj.tokens[0]), str)


def test_reload_in_a_fresh_process_with_the_hub_offline(tmp_path, tokenizer):
    tiny_model("bert", len(tokenizer)).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    script = (
        "import sys, torch; from dllm_mcmc import HFDenoiser, decode;"
        "d = HFDenoiser.from_pretrained(sys.argv[1]);"
        "t = decode(d, torch.tensor([5, 6]), 4, num_samples=2, generator=torch.Generator().manual_seed(0));"
        "print(t.tokens.shape[1], d.mask_id)"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["4", "2"]


def test_dream_style_shift_reads_the_previous_positions_logits(tokenizer):
    model = tiny_model("bert", len(tokenizer)).eval()
    plain = HFDenoiser(model, tokenizer=tokenizer)
    shifted = HFDenoiser(model, tokenizer=tokenizer, shift_logits=True)
    tokens = torch.tensor([[5, 6, 7, 2, 2, 2], [8, 9, 2, 2, 2, 2]])
    raw, moved = plain(tokens), shifted(tokens)
    assert torch.equal(moved[:, 1:], raw[:, :-1])
    assert torch.equal(moved[:, 0], raw[:, 0])
    # and decoding reads the shifted logits: the committed token's log p comes from logits i-1
    traj = decode(shifted, torch.tensor([5, 6]), 1, num_samples=3, generator=seeded(0))
    canvas = torch.tensor([[5, 6, 2]])
    expected = plain(canvas)[0, 1].masked_fill(torch.arange(len(tokenizer)) == 2, float("-inf")).log_softmax(-1)
    assert torch.allclose(traj.log_p, expected[traj.tokens[:, 0]], atol=1e-5)


def test_logits_are_float32_whatever_the_model_dtype(tokenizer):
    model = tiny_model("bert", len(tokenizer)).to(torch.bfloat16).eval()
    denoiser = HFDenoiser(model, tokenizer=tokenizer)
    assert denoiser.dtype == torch.bfloat16
    logits = denoiser(torch.tensor([[5, 2, 2]]))
    assert logits.dtype == torch.float32
    assert next(model.parameters()).dtype == torch.bfloat16  # the model was not converted


def test_mask_id_must_be_known(tokenizer):
    model = tiny_model("bert", len(tokenizer))
    with pytest.raises(ValueError, match="mask_id"):
        HFDenoiser(model)
    assert HFDenoiser(model, mask_id=2).mask_id == 2


def test_from_pretrained_needs_a_local_model_directory(tmp_path):
    with pytest.raises(ValueError, match="path"):
        HFDenoiser.from_pretrained(tmp_path / "missing")
