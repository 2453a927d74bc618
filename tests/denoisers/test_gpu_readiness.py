"""GPU readiness, checked on the CPU: bf16 models, micro-batching, and no host reads per decoding step.

A CUDA device cannot be exercised here; what can be checked without one is checked:

- a model whose parameters are bfloat16 runs through decode, replay and every kernel, and every
  record comes out float32 and finite;
- splitting forward calls into micro-batches (``max_rows``) changes no token and no density, and no
  call exceeds ``max_rows`` rows;
- the number of host reads of tensor values (``.item()``, ``bool(tensor)``, ``nonzero``, ``unique``)
  and of tensors built from Python data (``torch.tensor(...)``, a host-to-device copy on a GPU)
  does not grow with the number of decoding steps.
"""

import pytest
import torch
from conftest import CountingDenoiser, seeded
from torch.utils._python_dispatch import TorchDispatchMode

from dllm_mcmc import IMH, Power, Stepwise, TemperedTarget, decode, replay, sample
from dllm_mcmc.decoding import redecode
from dllm_mcmc.denoisers.batching import (
    LogitWindow,
    auto_max_rows,
    forward_in_chunks,
    resolve_max_rows,
    row_bytes,
)
from dllm_mcmc.denoisers.native import ArchitectureConfig, BidirectionalTransformer, NativeDenoiser

VOCAB, MASK = 40, 39


def tiny_llada(dtype: torch.dtype = torch.bfloat16, seed: int = 0) -> NativeDenoiser:
    """A two-layer LLaDA-shaped model with random weights in ``dtype``."""
    torch.manual_seed(seed)
    config = ArchitectureConfig(hidden=32, layers=2, heads=4, kv_heads=4, head_dim=8, intermediate=64,
                                vocab=VOCAB, mask_id=MASK, rope_theta=5e5, eos_id=2)
    model = BidirectionalTransformer(config)
    with torch.no_grad():  # sharper than the default init, so rules have something to rank
        model.head.weight.normal_(std=0.5)
    return NativeDenoiser(model.to(dtype), architecture="llada")


PROMPT = torch.tensor([5, 6, 7])


# -- bfloat16 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", ["random", "confidence", "stochastic", "entropy"])
def test_bf16_model_decodes_and_replays_in_float32(rule):
    denoiser = tiny_llada()
    assert denoiser.dtype == torch.bfloat16 and denoiser(torch.full((1, 4), MASK)).dtype == torch.float32
    traj = decode(denoiser, PROMPT, 6, rule=rule, temperature=0.7, block_length=3, num_samples=3,
                  generator=seeded(0), position_temperature=0.5)
    assert ((traj.tokens >= 0) & (traj.tokens < VOCAB) & (traj.tokens != MASK)).all()
    for record in (traj.log_q_steps, traj.log_p_steps, traj.log_position_steps):
        assert record.dtype == torch.float32 and torch.isfinite(record).all()
    again = replay(denoiser, PROMPT, traj.tokens, traj.order, traj.config)
    assert torch.allclose(again.log_p, traj.log_p, atol=1e-5)
    if traj.exact_density:
        assert torch.allclose(again.log_q, traj.log_q, atol=1e-5)


@pytest.mark.parametrize("kernel,options", [
    ("imh", {"proposal_batch": 2}),
    ("power", {"moves_per_draw": 2}),
    ("stepwise", {"num_candidates": 3}),
    ("stepwise", {"num_candidates": 3, "dedupe": True, "selection": "sir"}),
])
def test_bf16_model_runs_every_kernel(kernel, options):
    result = sample(tiny_llada(), PROMPT, 4, kernel=kernel, target_temperature=0.5, proposal_temperature=0.7,
                    rule="top_prob", num_chains=2, num_samples=3, warmup=1, progress=False, max_rows=3,
                    **options)
    assert result.tokens.shape == (2, 3, 4) and (result.tokens != MASK).all()
    for name in ("log_target", result.move_stat[0]):
        assert result.stats[name].dtype == torch.float32 and torch.isfinite(result.stats[name]).all(), name


def test_bf16_likelihoods_and_power_redecode():
    denoiser = tiny_llada()
    target = TemperedTarget(denoiser, PROMPT, 4, target_temperature=0.5, likelihood="left_to_right", max_rows=5)
    traj = decode(denoiser, PROMPT, 4, num_samples=2, generator=seeded(1))
    assert torch.isfinite(target.log_density(traj)).all()
    new = redecode(denoiser, PROMPT, traj, torch.tensor([2, 0]), seeded(2), max_rows=1)
    assert torch.equal(new.order[0, :2], traj.order[0, :2]) and torch.isfinite(new.log_q).all()


# -- micro-batching ------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", ["random", "confidence", "stochastic"])
def test_decode_micro_batches_change_nothing(toy, rule):
    counting = CountingDenoiser(toy)
    whole = decode(toy, None, 4, rule=rule, num_samples=7, tokens_per_step=2, generator=seeded(3))
    split = decode(counting, None, 4, rule=rule, num_samples=7, tokens_per_step=2, generator=seeded(3), max_rows=3)
    for name in ("tokens", "order", "log_q_steps", "log_p_steps", "log_position_steps"):
        assert torch.equal(getattr(whole, name), getattr(split, name)), name
    assert counting.batch_sizes == [3, 3, 1] * 2 and split.nfe == whole.nfe == 2
    counting.batch_sizes.clear()
    again = replay(counting, None, whole.tokens, whole.order, whole.config, max_rows=4)
    assert torch.equal(again.log_q, replay(toy, None, whole.tokens, whole.order, whole.config).log_q)
    assert max(counting.batch_sizes) == 4


@pytest.mark.parametrize("kernel,options", [
    ("imh", {"proposal_batch": 3}),
    ("power", {"moves_per_draw": 2}),
    ("stepwise", {"num_candidates": 4}),
    ("stepwise", {"num_candidates": 2, "suffix": "exact"}),
])
def test_kernel_micro_batches_change_nothing(toy, kernel, options):
    def run(denoiser, max_rows):
        return sample(denoiser, None, 4, kernel=kernel, target_temperature=0.5, proposal_temperature=0.5,
                      rule="stochastic", num_chains=3, num_samples=4, warmup=2, seed=5, progress=False,
                      likelihood="left_to_right" if kernel == "imh" else "order", max_rows=max_rows, **options)

    counting = CountingDenoiser(toy)
    whole, split = run(toy, None), run(counting, 2)
    assert torch.equal(whole.tokens, split.tokens)
    for name in ("log_target", whole.move_stat[0]) + (() if kernel == "stepwise" else ("accept_prob",)):
        assert torch.equal(whole.stats[name], split.stats[name]), name
    assert max(counting.batch_sizes) == 2 and whole.forward_rows == split.forward_rows


def test_stepwise_kernel_max_rows_overrides_the_target(toy):
    counting = CountingDenoiser(toy)
    target = TemperedTarget(counting, None, 4, target_temperature=0.5, max_rows=5)
    kernel = Stepwise(target, proposal_temperature=0.5, num_candidates=4, num_chains=3, max_rows=2)
    kernel.setup(0)
    _ = kernel.initial_params  # one stepwise decode
    assert max(counting.batch_sizes) == 2


def test_forward_in_chunks_keeps_rows_and_dtype():
    denoiser = tiny_llada()
    canvas = torch.randint(0, MASK, (5, 6), generator=seeded(0))
    whole = forward_in_chunks(denoiser, canvas)
    split = forward_in_chunks(denoiser, canvas, max_rows=2)
    assert split.dtype == torch.float32 and split.shape == whole.shape
    assert torch.allclose(split, whole, atol=1e-3)  # bf16 matmuls may depend on the batch size


def test_max_rows_settings(toy):
    assert resolve_max_rows(toy, "auto", 4) is None  # off CUDA: no split
    assert resolve_max_rows(toy, 3, 4) == 3 and resolve_max_rows(toy, None, 4) is None
    for bad in (0, -1, 2.5, True, "all"):
        with pytest.raises(ValueError, match="max_rows"):
            decode(toy, None, 4, max_rows=bad)
        with pytest.raises(ValueError, match="max_rows"):
            TemperedTarget(toy, None, 4, max_rows=bad)
    counting = CountingDenoiser(toy)
    decode(counting, None, 4, num_samples=6, max_rows="auto", generator=seeded(0))
    assert counting.batch_sizes == [6] * 4
    llada = tiny_llada()
    per_row = row_bytes(llada, 10)
    # vocab × 14 bytes of logits plus one layer's bf16 activations and a float32 score row per head
    assert per_row == 10 * (VOCAB * 14 + (6 * 32 + 3 * 64) * 2 + 4 * 4 * 10)
    assert auto_max_rows(llada, 10, free_bytes=100 * per_row) == 50
    assert auto_max_rows(llada, 10, free_bytes=1) == 1


def test_a_logit_window_sizes_the_rows_and_the_forward_call_alike(toy):
    llada, window = tiny_llada(), LogitWindow(4, 7)  # 3 of a row's 10 positions need logits
    per_row = row_bytes(llada, 10, window)
    assert per_row == 3 * VOCAB * 14 + 10 * ((6 * 32 + 3 * 64) * 2 + 4 * 4 * 10)
    assert row_bytes(llada, 10, [LogitWindow(4, 6), window, LogitWindow(9, 10)]) == per_row  # the widest call
    assert auto_max_rows(llada, 10, free_bytes=100 * per_row, logit_positions=window) == 50
    assert row_bytes(toy, 4, LogitWindow(1, 2)) == row_bytes(toy, 4)  # computes every position anyway
    canvas = torch.randint(0, MASK, (5, 10), generator=seeded(0))
    assert torch.equal(forward_in_chunks(llada, canvas, 2, logit_positions=window),
                       forward_in_chunks(llada, canvas, 2, logit_positions=torch.arange(4, 7)))
    with pytest.raises(ValueError, match="reach past"):
        forward_in_chunks(llada, canvas, logit_positions=LogitWindow(8, 11))
    for start, stop in [(3, 2), (-1, 2), (0, 2.0)]:
        with pytest.raises(ValueError, match="logit window"):
            LogitWindow(start, stop)


# -- host reads per step -------------------------------------------------------------------------


class HostReads(TorchDispatchMode):
    """Counts the operations that make the host wait for the device on a GPU: reading a tensor's
    value (``.item()``, ``bool()``, ``float()``), ops whose output size depends on values
    (``nonzero``, boolean-mask indexing, ``unique``), and tensors built from Python data.
    (``.tolist()`` reads memory below the dispatcher and is not seen.)"""

    NAMES = ("_local_scalar_dense", "nonzero", "masked_select", "_unique2", "unique_dim", "lift_fresh")
    INDEXING = ("index", "index_put", "index_put_", "_index_put_impl_")

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in self.NAMES or name in self.INDEXING and any(
            index is not None and index.dtype in (torch.bool, torch.uint8) for index in args[1]
        ):
            self.count += 1
        return func(*args, **(kwargs or {}))


def host_reads(run) -> int:
    with HostReads() as reads:
        run()
    return reads.count


def test_no_host_reads_inside_the_decoding_loops():
    denoiser = tiny_llada(torch.float32)

    def decode_run(length, **options):
        return lambda: decode(denoiser, PROMPT, length, num_samples=2, generator=seeded(0), **options)

    def kernel_run(length, kernel_class, **options):
        def run():
            target = TemperedTarget(denoiser, PROMPT, length, target_temperature=0.5, rule="stochastic")
            kernel = kernel_class(target, proposal_temperature=0.7, num_chains=2, **options)
            kernel.setup(0)
            kernel.sample(kernel.initial_params)
        return run

    for options in ({"rule": "random"}, {"rule": "confidence"}, {"rule": "entropy", "tokens_per_step": 2}):
        assert host_reads(decode_run(4, **options)) == host_reads(decode_run(8, **options)), options
    for kernel_class, options in ((IMH, {"proposal_batch": 2}), (Power, {}), (Stepwise, {"num_candidates": 3})):
        assert host_reads(kernel_run(4, kernel_class, **options)) == host_reads(kernel_run(8, kernel_class, **options))
    traj = decode(denoiser, PROMPT, 8, num_samples=2, generator=seeded(0))
    short = decode(denoiser, PROMPT, 4, num_samples=2, generator=seeded(0))
    assert host_reads(lambda: replay(denoiser, PROMPT, short.tokens, short.order, short.config)) == host_reads(
        lambda: replay(denoiser, PROMPT, traj.tokens, traj.order, traj.config))
