"""The stepwise kernel (Fang et al. 2026): exactness on enumerable toys, cost, options, mechanics.

Tolerances. With ``n = 20,000`` draws over the 81 sequences of a V=3, L=4 toy, the plug-in TV of
*exact* i.i.d. draws from ``p^(1/T)`` (T = 0.5) is about 0.015 (0.0146 / 0.0155 / 0.0161 for the
toys of seeds 0 / 1 / 2, sharpness 1). TV bounds of 0.03 are therefore twice the noise floor;
the stepwise runs below land at 0.015–0.017, the noise floor itself. The finite-K bias of the
K = 64 MH scan (or SIR) over a 3-token vocabulary is far below that floor.
"""

import itertools
import math
import pickle

import pytest
import torch
from conftest import CountingDenoiser, empirical, seeded, total_variation
from pyro.infer import MCMC

from dllm_mcmc import ExactDenoiser, MeteredDenoiser, TemperedTarget, decode, replay, sample
from dllm_mcmc.decoding import Rule, stepwise_decode
from dllm_mcmc.decoding.suffix import exact_log_suffix, mean_field_log_suffix, suffix_counts
from dllm_mcmc.mcmc.stepwise import Stepwise
from dllm_mcmc.mh import mh_scan as _mh_scan
from dllm_mcmc.mh import sir as _sir


def _run(toy, temperature=0.5, tau=0.5, num_chains=2_000, num_samples=10, seed=0, target_options=None,
         **options):
    target = TemperedTarget(toy, None, toy.length, target_temperature=temperature, **(target_options or {}))
    kernel = Stepwise(target, proposal_temperature=tau, num_chains=num_chains, seed=seed, **options)
    result = sample(toy, None, toy.length, kernel=kernel, num_samples=num_samples, warmup=0, progress=False)
    return result, kernel


def _tv_to_target(toy, result, temperature=0.5):
    return total_variation(empirical(toy, result.tokens.reshape(-1, toy.length)), toy.tempered(temperature))


def _naive_bayes(seed=3, vocab_size=3, length=4, sharpness=1.0):
    """``p(x) = p(x_0) Π_{j≥1} p(x_j | x_0)`` with random softmax(sharpness · N(0, 1)) tables."""
    generator = seeded(seed)
    prior = torch.softmax(sharpness * torch.randn(vocab_size, generator=generator, dtype=torch.float64), 0)
    tables = torch.softmax(
        sharpness * torch.randn(length - 1, vocab_size, vocab_size, generator=generator, dtype=torch.float64), -1
    )  # [j, x_0, x_j]
    probs = prior
    for j in range(length - 1):
        probs = probs[..., None] * tables[j].view([vocab_size] + [1] * j + [vocab_size])
    return ExactDenoiser(probs)


# -- exactness on enumerable toys ---------------------------------------------------------------


def test_exact_suffix_samples_the_globally_tempered_target():
    """Exact suffix, K = 64, T = τ = 0.5, random positions; ExactDenoiser.random(3, 4, seed=0,
    sharpness=1). 2,000 rows × 10 decodes = 20,000 draws; TV < 0.03 (noise floor ≈ 0.015, see the
    module docstring; measured 0.015). With T = τ the MH ratio is S(v')/S(v) exactly."""
    toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0, sharpness=1.0)
    result, _ = _run(toy, num_candidates=64, suffix="exact", dedupe=True)
    assert _tv_to_target(toy, result) < 0.03


def test_exact_suffix_is_exact_for_deterministic_rules_and_blocks():
    """The exact conditional of π_T does not depend on the order: entropy positions in blocks of 2
    with suffix_scope='all' sample p^(1/T) too (same toy and tolerance as above)."""
    toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0, sharpness=1.0)
    result, _ = _run(toy, num_candidates=64, suffix="exact", suffix_scope="all", dedupe=True,
                     target_options={"rule": Rule("entropy", block_length=2)})
    assert _tv_to_target(toy, result) < 0.03


def test_one_candidate_is_local_tempering():
    """K = 1 commits every proposal: random-order decoding at τ. Its law is enumerated exactly
    as Σ_σ Π_t q(x_σt | state) over the 24 orders (replay's log_q includes the 1/|M| position
    terms). 20,000 rows × 5 decodes = 100,000 draws: the i.i.d. TV floor is ≈ 0.007, bound 0.02.
    The law is 0.16 away from p^(1/T) here, so K = 1 is not the target."""
    toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    tau = 0.5
    orders = torch.tensor(list(itertools.permutations(range(4))))
    count = toy.sequences.shape[0]
    log_q = replay(toy, None, toy.sequences.repeat(len(orders), 1), orders.repeat_interleave(count, 0),
                   rule="random", temperature=tau).log_q
    local = log_q.double().exp().view(len(orders), count).sum(0)
    assert abs(float(local.sum()) - 1) < 1e-6
    result, _ = _run(toy, tau=tau, num_candidates=1, num_chains=20_000, num_samples=5)
    assert total_variation(empirical(toy, result.tokens.reshape(-1, 4)), local) < 0.02
    assert total_variation(local, toy.tempered(0.5)) > 0.1


def test_one_candidate_reproduces_decode_draw_for_draw():
    """With K = 1 the kernel consumes its generator exactly as `decode` does."""
    toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    for rule, block_length in (("random", None), ("entropy", 2), ("stochastic", 2)):
        target = TemperedTarget(toy, None, 4, target_temperature=0.5, rule=Rule(rule, block_length=block_length))
        kernel = Stepwise(target, proposal_temperature=0.7, num_candidates=1, num_chains=50, seed=3)
        kernel.setup(0)
        traj = decode(toy, None, 4, rule=rule, block_length=block_length, temperature=0.7,
                      num_samples=50, generator=seeded(3))
        assert torch.equal(kernel.initial_params["tokens"], traj.tokens)
        assert torch.equal(kernel.initial_params["order"], traj.order)


def test_mean_field_is_exact_when_the_rest_is_independent_given_the_candidate():
    """Naive-Bayes joint p(x_0) Π_j p(x_j | x_0) (V=3, L=4, seed 3, sharpness 1). With
    block_length=1 the order is left to right: x_0 is chosen first, and afterwards the remaining
    positions are independent given it, so the mean-field suffix over all masked positions
    (suffix_scope='all') is the exact S_T. K = 64, T = τ = 0.5, 20,000 draws: TV < 0.03
    (measured 0.014). Power: local tempering (K = 1) is measurably off, TV > 0.05 (measured
    0.084; its i.i.d. floor is ≈ 0.015)."""
    toy = _naive_bayes()
    options = dict(suffix="mean_field", suffix_scope="all", dedupe=True, target_options={"rule": Rule(block_length=1)})
    stepwise, _ = _run(toy, num_candidates=64, **options)
    local, _ = _run(toy, num_candidates=1, **options)
    assert _tv_to_target(toy, stepwise) < 0.03
    assert _tv_to_target(toy, local) > 0.05


def test_sir_selection_with_many_candidates_matches_the_target():
    """SIR over K = 64 candidates with the exact suffix (toy and tolerance of the first test;
    measured 0.017)."""
    toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0, sharpness=1.0)
    result, _ = _run(toy, num_candidates=64, suffix="exact", selection="sir", dedupe=True, seed=1)
    assert _tv_to_target(toy, result) < 0.03
    ess = result.stats["selection_ess"]
    assert ((ess >= 1 / 64 - 1e-6) & (ess <= 1 + 1e-6)).all()


# -- suffix values against the enumerated joint ---------------------------------------------------


def _brute_log_suffix(toy, fixed, temperature):
    """``log Σ_y p(y | x_fixed)^(1/T)`` by summing the joint table."""
    keep = torch.ones(toy.sequences.shape[0], dtype=torch.bool)
    for position, token in fixed.items():
        keep &= toy.sequences[:, position] == token
    probs = toy.probs[keep]
    return math.log(float(((probs / probs.sum()) ** (1 / temperature)).sum()))


def test_exact_suffix_and_mean_field_values():
    toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    m = toy.mask_id
    canvases = torch.tensor([[m, 0, m, m], [m, 1, m, m], [m, 2, m, m], [m, m, m, 2]])
    logits = toy(canvases)
    scope = canvases == m
    exact = exact_log_suffix(canvases, logits, torch.ones(4, dtype=torch.bool), 0.5, m, forward=toy)
    expected = [_brute_log_suffix(toy, {1: v}, 0.5) for v in range(3)] + [_brute_log_suffix(toy, {3: 2}, 0.5)]
    assert torch.allclose(exact, torch.tensor(expected, dtype=torch.float64), atol=1e-5)
    # mean field: Σ_j log Σ_u p_j(u | canvas)^(1/T) from the same logits
    mean_field = mean_field_log_suffix(logits, scope, 0.5, m)
    marginals = torch.softmax(logits.double(), -1)
    hand = torch.stack([(marginals[r][scope[r]] ** 2).sum(-1).log().sum() for r in range(4)])
    assert torch.allclose(mean_field.double(), hand, atol=1e-5)


# -- cost -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("block_length", [None, 2])
def test_mean_field_costs_one_forward_call_per_step_with_k_times_c_rows(block_length):
    """L = 4 steps: the empty canvas (C rows) counts as step 1's forward; steps 1..3 each push
    the C·K candidate canvases in ONE call; the last step needs none. Calls = L = 4 per decode,
    rows = C + (L − 1)·C·K."""
    toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    counting = CountingDenoiser(toy)
    meter = MeteredDenoiser(counting)
    chains, candidates, length = 3, 5, 4
    target = TemperedTarget(meter, None, length, target_temperature=0.5, rule=Rule(block_length=block_length))
    kernel = Stepwise(target, proposal_temperature=0.5, num_candidates=candidates, num_chains=chains)
    kernel.setup(0)
    assert counting.batch_sizes == [] and kernel.cost == (0, 0)  # no initial draw until one is read
    _ = kernel.initial_params  # Pyro's MCMC reads it: one stepwise decode
    assert counting.batch_sizes == [chains] + [chains * candidates] * (length - 1)
    per_decode = (length, chains + (length - 1) * chains * candidates)
    assert kernel.cost == per_decode
    result = sample(toy, None, 4, kernel=kernel, num_samples=6, warmup=2, progress=False)
    # the runner skips warm-up for independent draws and reads no initial state: 6 decodes for 6 draws
    assert result.config["warmup"] == 0
    assert (result.nfe, result.forward_rows) == (per_decode[0] * 6, per_decode[1] * 6)
    assert (result.stats["nfe"] == length).all()
    assert torch.allclose(result.stats["forward_rows"], torch.tensor(per_decode[1] / chains))


def test_exact_suffix_enumeration_calls_are_counted_and_dedupe_keeps_the_calls():
    """Exact suffix (oracle): after step t the m = L − 1 − t other masked positions need m − 1
    further chain-rule calls (level 0 is the candidate call itself): 2 + 1 + 0 for L = 4."""
    toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    costs = []
    for dedupe in (False, True):
        target = TemperedTarget(toy, None, 4, target_temperature=0.5)
        kernel = Stepwise(target, proposal_temperature=0.5, num_candidates=8, num_chains=4,
                          suffix="exact", dedupe=dedupe)
        kernel.setup(0)
        _ = kernel.initial_params  # one stepwise decode
        costs.append(kernel.cost)
    assert costs[0][0] == costs[1][0] == 4 + 3
    assert costs[1][1] < costs[0][1]  # 32 candidate canvases hold at most 4 × 3 distinct ones


def test_dedupe_changes_rows_not_results():
    toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    outputs = []
    for dedupe in (False, True):
        result, kernel = _run(toy, num_chains=64, num_samples=5, num_candidates=16, seed=4, dedupe=dedupe,
                              target_options={"rule": Rule(block_length=2)})
        outputs.append((result.tokens, result.stats["log_target"], result.stats["selection_accept_rate"], kernel.cost))
    assert torch.equal(outputs[0][0], outputs[1][0])
    assert torch.allclose(outputs[0][1], outputs[1][1]) and torch.allclose(outputs[0][2], outputs[1][2])
    assert outputs[0][3][0] == outputs[1][3][0] and outputs[1][3][1] < outputs[0][3][1]


# -- records, options, reproducibility --------------------------------------------------------------


@pytest.mark.parametrize("rule,block_length", [("random", None), ("entropy", 2), ("stochastic", 2)])
def test_log_target_is_the_targets_log_density_of_the_draw(rule, block_length):
    toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    target = TemperedTarget(toy, None, 4, target_temperature=0.5, rule=Rule(
        rule, block_length=block_length, position_temperature=0.5, position_score="margin"))
    kernel = Stepwise(target, proposal_temperature=0.7, num_candidates=4, num_chains=16, seed=2)
    kernel.setup(0)
    params = kernel.sample(kernel.initial_params)
    traced = target.traced_log_density(params["tokens"], params["order"])
    assert torch.allclose(kernel.info["log_target"], traced, atol=1e-4)
    if rule == "random":  # u(σ | x) = 1/4!, and the toy is consistent: log p along σ = log p(x)
        expected = -math.log(24) + toy.log_prob(params["tokens"]) / 0.5
        assert torch.allclose(kernel.info["log_target"], expected, atol=1e-4)


def test_equal_weights_accept_every_move():
    """One position, T = τ: every candidate has the same weight, so the MH scan accepts every
    move and the SIR effective sample size is K."""
    toy = ExactDenoiser.random(vocab_size=3, length=1, seed=0)
    for selection in ("mh", "sir"):
        _, kernel = _run(toy, num_chains=8, num_samples=2, num_candidates=6, selection=selection)
        assert torch.allclose(kernel.info[kernel.selection_stat], torch.ones(8))
        assert "accepted" not in kernel.info  # no constant field: every draw is new


def test_mh_scan_arithmetic():
    inf = float("inf")
    log_weight = torch.tensor([[0.0, -inf, 5.0], [-inf, -1.0, -2.0], [-inf, -inf, 0.0]], dtype=torch.float64)
    for seed in range(10):
        selected, fraction, invalid = _mh_scan(log_weight, seeded(seed))
        assert selected[0] == 2 and not invalid  # -inf never accepted; +5 always
        assert selected[1] in (1, 2)  # a zero-mass start accepts any move of positive mass
        assert selected[2] == 2 and fraction[2] == 0.5  # -inf to -inf is refused, then 0 accepted
    # one move of ratio 0.3: accepted with probability 0.3
    log_weight = torch.tensor([[0.0, math.log(0.3)]], dtype=torch.float64).expand(20_000, 2)
    selected, fraction, _ = _mh_scan(log_weight, seeded(0))
    assert abs(float(selected.double().mean()) - 0.3) < 4 * math.sqrt(0.21 / 20_000)
    assert torch.equal(fraction, selected.double())
    assert _mh_scan(torch.full((1, 2), float("-inf"), dtype=torch.float64), seeded(0))[2]
    _, ess, _ = _sir(torch.tensor([[0.0, 0.0, float("-inf"), float("-inf")]], dtype=torch.float64), seeded(0))
    assert torch.allclose(ess, torch.tensor([0.5], dtype=torch.float64))


def test_same_seed_same_draws_and_other_seed_other_draws():
    toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    runs = [_run(toy, num_chains=16, num_samples=4, num_candidates=8, seed=seed)[0] for seed in (5, 5, 6)]
    assert torch.equal(runs[0].tokens, runs[1].tokens)
    assert torch.equal(runs[0].stats["selection_accept_rate"], runs[1].stats["selection_accept_rate"])
    assert not torch.equal(runs[0].tokens, runs[2].tokens)


@pytest.mark.parametrize(
    "options,name",
    [
        ({"num_candidates": 0}, "num_candidates"),
        ({"num_candidates": 2.0}, "num_candidates"),
        ({"suffix": "x"}, "suffix"),
        ({"selection": "y"}, "selection"),
        ({"suffix_scope": "z"}, "suffix_scope"),
        ({"num_chains": 0}, "num_chains"),
        ({"proposal_temperature": 0.0}, "proposal_temperature"),
        ({"max_rows": 0}, "max_rows"),
    ],
)
def test_bad_options_are_refused_by_name(options, name):
    toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    with pytest.raises(ValueError, match=name):
        Stepwise(TemperedTarget(toy, None, 4, target_temperature=0.5), **options)


def test_suffix_counts_per_step():
    """Masked positions left in scope after each commit (L = 4, blocks of 2)."""
    schedule = Rule(block_length=2).config().schedule(4)
    assert suffix_counts(schedule, 4, "block") == [1, 0, 1, 0]
    assert suffix_counts(schedule, 4, "all") == [3, 2, 1, 0]


def test_several_tokens_per_step_and_huge_enumerations_are_refused():
    toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    with pytest.raises(ValueError, match="tokens_per_step"):
        Stepwise(TemperedTarget(toy, None, 4, target_temperature=0.5, rule=Rule(tokens_per_step=2)))
    with pytest.raises(ValueError, match="max_suffix_completions"):
        Stepwise(TemperedTarget(toy, None, 4, target_temperature=0.5), suffix="exact", max_suffix_completions=26)
    # block scope enumerates only the block: 3^1 completions
    Stepwise(TemperedTarget(toy, None, 4, target_temperature=0.5, rule=Rule(block_length=2)), suffix="exact",
             max_suffix_completions=3)
    with pytest.raises(ValueError, match="target"):
        Stepwise(toy)


def test_prompt_max_rows_chunking_and_pyro_mcmc():
    """A prompt in front of the response; max_rows splits each step's forward into calls of at
    most max_rows rows; the kernel runs under pyro.infer.MCMC."""
    prompt = torch.tensor([2, 0])
    toy = ExactDenoiser.random(vocab_size=3, length=3, seed=1, prompt=prompt)
    counting = CountingDenoiser(toy)
    target = TemperedTarget(counting, prompt, 3, target_temperature=0.5)
    kernel = Stepwise(target, proposal_temperature=0.5, num_candidates=4, num_chains=3, max_rows=5)
    mcmc = MCMC(kernel, num_samples=5, warmup_steps=1, disable_progbar=True)
    mcmc.run()
    tokens = mcmc.get_samples(group_by_chain=True)["tokens"]
    assert tokens.shape == (1, 5, 3, 3) and ((tokens >= 0) & (tokens < 3)).all()
    assert "selection_accept_rate" in kernel.logging()
    assert len(pickle.loads(pickle.dumps(kernel.diagnostics()))["selection_accept_rate"]) == 3
    # per decode: the empty canvas (3 rows), then 2 candidate steps of 12 rows in calls of 5, 5, 2
    assert counting.batch_sizes[:7] == [3, 5, 5, 2, 5, 5, 2]
    assert kernel.info["nfe"].tolist() == [7.0] * 3
    assert kernel.info["forward_rows"].tolist() == [9.0] * 3


def test_exact_suffix_with_a_prompt():
    prompt = torch.tensor([1])
    toy = ExactDenoiser.random(vocab_size=3, length=3, seed=2, prompt=prompt)
    m = toy.mask_id
    canvases = torch.tensor([[1, m, 0, m], [1, m, 2, m], [1, 1, m, m]])
    exact = exact_log_suffix(canvases, toy(canvases)[:, 1:], torch.ones(3, dtype=torch.bool), 0.7, m,
                             forward=lambda rows: toy(rows)[:, 1:])
    expected = [_brute_log_suffix(toy, fixed, 0.7) for fixed in ({1: 0}, {1: 2}, {0: 1})]
    assert torch.allclose(exact, torch.tensor(expected, dtype=torch.float64), atol=1e-5)


def test_stepwise_by_name_through_sample_skips_warmup():
    from dllm_mcmc import ExactDenoiser, sample

    toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    result = sample(toy, None, 4, kernel="stepwise", target_temperature=0.5, proposal_temperature=0.5,
                    num_candidates=8, suffix="mean_field", selection="sir", num_chains=3, num_samples=4,
                    warmup=50, progress=False)
    assert result.tokens.shape == (3, 4, 4)
    assert result.config["warmup"] == 0 and result.config["num_candidates"] == 8
    # 4 draws, each 4 sequential calls (no initial draw: the runner does not read an independent kernel's state)
    assert result.nfe == 4 * 4


# -- stepwise_decode, the function behind the kernel --------------------------------------------


@pytest.mark.parametrize("rule", [Rule("random"), Rule("entropy", block_length=2),
                                  Rule("stochastic", block_length=2, position_temperature=0.5)])
@pytest.mark.parametrize("prompt", [None, torch.tensor([2, 0])])
def test_stepwise_decode_with_one_candidate_is_decode_draw_for_draw(rule, prompt):
    """K = 1 consumes the generator as `decode` does: same tokens, order, log p and position terms."""
    toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0, prompt=prompt)
    draw = stepwise_decode(toy, prompt, 4, rule=rule, temperature=0.7, target_temperature=0.5, num_candidates=1,
                           num_samples=50, generator=seeded(3))
    traj = decode(toy, prompt, 4, rule=rule, temperature=0.7, num_samples=50, generator=seeded(3))
    assert torch.equal(draw.tokens, traj.tokens) and torch.equal(draw.order, traj.order)
    assert torch.allclose(draw.log_p, traj.log_p, atol=1e-5)
    assert torch.allclose(draw.log_position, traj.log_position, atol=1e-5)
    assert torch.equal(draw.selection_stat, torch.ones(50))
    assert (draw.nfe, draw.forward_rows) == (4, 50 * 4)


def test_kernel_draws_are_stepwise_decode_with_the_targets_options():
    toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    rule = Rule("stochastic", block_length=2, position_temperature=0.5)
    target = TemperedTarget(toy, None, 4, target_temperature=0.5, rule=rule)
    kernel = Stepwise(target, proposal_temperature=0.7, num_candidates=5, selection="sir", num_chains=6, seed=4)
    kernel.setup(0)
    draw = stepwise_decode(toy, None, 4, rule=rule, temperature=0.7, target_temperature=0.5, num_candidates=5,
                           selection="sir", num_samples=6, generator=seeded(4))
    assert torch.equal(kernel.initial_params["tokens"], draw.tokens)
    assert torch.equal(kernel.initial_params["order"], draw.order)
    assert (draw.nfe, draw.forward_rows) == kernel.cost == (4, 6 + 3 * 6 * 5)
    assert torch.allclose(target.traced_log_density(draw.tokens, draw.order),
                          draw.log_position + draw.log_p / 0.5, atol=1e-4)


def test_stepwise_decode_counts_on_a_metered_denoiser_and_seeds_from_torch():
    meter = MeteredDenoiser(ExactDenoiser.random(vocab_size=3, length=4, seed=0))
    torch.manual_seed(0)
    first = stepwise_decode(meter, None, 4, num_candidates=3, num_samples=2, max_rows=4)
    torch.manual_seed(0)
    again = stepwise_decode(meter, None, 4, num_candidates=3, num_samples=2, max_rows=4)
    assert torch.equal(first.tokens, again.tokens)
    # per decode: 2 rows, then 3 candidate calls of 6 rows split 4 + 2
    assert (first.nfe, first.forward_rows) == (1 + 3 * 2, 2 + 3 * 6) and meter.nfe == 2 * first.nfe


@pytest.mark.parametrize("options,name", [
    ({"temperature": 0.0}, "temperature"),
    ({"target_temperature": -1.0}, "target_temperature"),
    ({"num_samples": 0}, "num_samples"),
    ({"num_candidates": 0}, "num_candidates"),
    ({"dedupe": 1}, "dedupe"),
    ({"rule": "confidence"}, "confidence"),
    ({"rule": Rule(tokens_per_step=2)}, "tokens_per_step"),
    ({"suffix": "exact", "max_suffix_completions": 26}, "max_suffix_completions"),
])
def test_stepwise_decode_refuses_bad_options_by_name(options, name):
    with pytest.raises(ValueError, match=name):
        stepwise_decode(ExactDenoiser.random(vocab_size=3, length=4, seed=0), None, 4, **options)


@pytest.mark.parametrize("selection, stat", [("mh", "selection_accept_rate"), ("sir", "selection_ess")])
def test_stepwise_reports_its_selection_statistic_under_its_own_name(selection, stat):
    toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    result = sample(toy, None, 4, kernel="stepwise", target_temperature=0.5, proposal_temperature=0.7,
                    num_candidates=4, num_chains=3, num_samples=5, progress=False, selection=selection)
    assert "accepted" not in result.stats and "accept_prob" not in result.stats
    name, trace = result.move_stat
    assert name == stat and torch.equal(trace, result.stats[stat])
    with pytest.raises(KeyError, match=stat):
        _ = result.acceptance_trace  # not an MH kernel: no acceptance under that name
