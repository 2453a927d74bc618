"""The samplers and the experiment runner on a CUDA device (skipped where there is none).

CI has no GPU; these run on the project's lent GPU machines: `python -m pytest tests/denoisers/test_cuda.py`.
A tiny native LLaDA / Dream checkpoint is loaded in bfloat16 on the GPU; every sampler and the
`dllm-mcmc eval` runner must run there, keep every tensor on the device, and be reproducible.
"""

import pytest
import torch
from native_fixtures import MASK, checkpoint

from dllm_mcmc import decode, load_model, sample
from dllm_mcmc.eval.experiment import run_experiment
from dllm_mcmc.eval.records import read_records

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("kind", ["llada", "dream"])
def test_decode_and_every_kernel_run_on_the_gpu_in_bfloat16(tmp_path, kind):
    path, _ = checkpoint(tmp_path, kind)
    denoiser, codec = load_model(str(path), dtype=torch.bfloat16, device="cuda")
    tokenizer = codec.tokenizer
    assert denoiser.device.type == "cuda" and denoiser.dtype == torch.bfloat16
    prompt = torch.tensor(tokenizer("12+7=")["input_ids"], device="cuda")
    runs = [decode(denoiser, prompt, 6, rule=rule, num_samples=4, generator=torch.Generator().manual_seed(0),
                   max_rows=2)
            for rule in ("random", "confidence", "confidence")]
    for traj in runs:
        assert traj.tokens.device.type == "cuda" and (traj.tokens != MASK).all()
        assert traj.log_q.dtype == torch.float32 and torch.isfinite(traj.log_q).all()
    assert torch.equal(runs[1].tokens, runs[2].tokens)  # same seed, same draws on one device
    for kernel in ("imh", "power", "stepwise"):
        result = sample(denoiser, prompt, 4, kernel=kernel, num_chains=2, num_samples=3, warmup=1, seed=0,
                        progress=False, max_rows="auto")
        assert result.tokens.shape == (2, 3, 4) and (result.tokens != MASK).all(), kernel
        assert all(torch.isfinite(v.float()).all() for v in result.stats.values()), kernel


def test_eval_runner_on_the_gpu(tmp_path):
    path, _ = checkpoint(tmp_path, "llada")
    config = {"model": str(path), "gen_length": 4, "model_options": {"dtype": "bfloat16", "device": "cuda"},
              "tasks": ["arith"], "problems": 2, "samples": 3, "seed": 0, "output": str(tmp_path / "r.jsonl"),
              "methods": [{"name": "random"}, {"name": "confidence", "rule": "confidence"},
                          {"name": "imh", "sampler": "imh", "warmup": 1, "proposal_batch": 2},
                          {"name": "stepwise", "sampler": "stepwise", "num_candidates": 2}]}
    assert run_experiment(config, progress=False).ran == 8
    records = read_records(tmp_path / "r.jsonl")
    assert len(records) == 24 and all(isinstance(r["completion"], str) for r in records)
