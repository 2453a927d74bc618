"""The bundled model's architecture, tokenizer, training path and loader (tiny configurations)."""

import pytest
import torch

from dllm_mcmc import decode
from dllm_mcmc.small_model import CharTokenizer, SmallConfig, SmallDLM, load_small_model
from dllm_mcmc.small_model.load import small_model_dir
from dllm_mcmc.small_model.train import exchange_gap, random_order_samples
from dllm_mcmc.small_model.train import main as train_main
from dllm_mcmc.tasks import ALPHABET, FAMILIES


def test_tokenizer_round_trip_and_specials():
    tokenizer = CharTokenizer(ALPHABET)
    text = "2 3 7>13:2*3+7."
    assert tokenizer.decode(tokenizer.encode(text)) == text
    assert tokenizer.decode(tokenizer.encode("ab") + [tokenizer.eos_id] + tokenizer.encode("a")) == "ab"
    assert tokenizer.encode_prompt("ab", 4)[:2] == [tokenizer.pad_id] * 2
    with pytest.raises(ValueError, match="alphabet"):
        tokenizer.encode("Z")
    with pytest.raises(ValueError, match="longer"):
        tokenizer.encode_prompt("abab", 3)


def test_model_is_a_denoiser_and_is_bidirectional():
    torch.manual_seed(0)
    model = SmallDLM(SmallConfig(vocab_size=8, max_length=6, dim=16, layers=1, heads=2), mask_id=1).eval()
    tokens = torch.tensor([[3, 4, 5, 1, 1, 6]])
    logits = model(tokens)
    assert logits.shape == (1, 6, 8)
    changed = tokens.clone()
    changed[0, 5] = 7  # a later token changes an earlier position's logits: no causal mask
    assert not torch.allclose(model(changed)[0, 0], logits[0, 0])
    with pytest.raises(ValueError, match="max_length"):
        model(torch.ones(1, 7, dtype=torch.long))


def test_training_lowers_the_loss_and_the_result_loads_and_decodes(tmp_path):
    torch.set_num_threads(1)
    train_main(["--out", str(tmp_path), "--steps", "80", "--dim", "32", "--layers", "1", "--heads", "2",
                "--batch-size", "32", "--lr", "3e-3"])
    rows = [line.split(",") for line in (tmp_path / "loss.csv").read_text().splitlines()[1:]]
    first, last = float(rows[0][2]), float(rows[-1][2])
    assert last < first - 0.3, (first, last)  # from ~log(26) = 3.26 towards the data's entropy
    model, tokenizer, config = load_small_model(tmp_path)
    assert config["training"]["steps"] == 80 and not model.training
    assert (tmp_path / "loss.png").stat().st_size > 5000  # the loss curve the model card shows
    family = FAMILIES["arith"]
    problem = family.generate("test", 1, seed=0)[0]
    prompt = torch.tensor(tokenizer.encode_prompt(family.format_prompt(problem), config["prompt_length"]))
    traj = decode(model, prompt, config["response_length"], rule="confidence", temperature=0.5,
                  num_samples=4, generator=torch.Generator().manual_seed(0))
    assert traj.tokens.shape == (4, config["response_length"])
    assert all(isinstance(family.verify(problem, tokenizer.decode(row)), bool) for row in traj.tokens)


class ContextFree(torch.nn.Module):
    """Logits that depend on the position only: the conditionals of a product distribution, consistent."""

    mask_id = 1

    def __init__(self, length: int, vocab: int):
        super().__init__()
        self.table = torch.randn(length, vocab, generator=torch.Generator().manual_seed(3))

    def forward(self, tokens):
        return self.table[None].expand(tokens.shape[0], -1, -1)


def test_exchange_gap_is_zero_for_a_joint_and_not_for_a_trained_model():
    generator = torch.Generator().manual_seed(0)
    rows = torch.randint(2, 8, (64, 10), generator=generator)
    gap = exchange_gap(ContextFree(10, 8), rows, prompt_length=4, generator=generator)
    assert gap.shape == (64,) and gap.abs().max() < 1e-5
    model, tokenizer, config = load_small_model(small_model_dir("tasks-small"))
    family = FAMILIES["countdown"]
    prompts = torch.tensor([tokenizer.encode_prompt(family.format_prompt(p), config["prompt_length"])
                            + [model.mask_id] * config["response_length"]
                            for p in family.generate("test", 16, seed=0)])
    torch.set_num_threads(1)
    own = random_order_samples(model, prompts, config["prompt_length"], generator)
    assert (own[:, config["prompt_length"]:] != model.mask_id).all() and (own[:, :20] == prompts[:, :20]).all()
    with torch.no_grad():
        gaps = exchange_gap(model, own, config["prompt_length"], generator)
    assert gaps.abs().mean() > 1e-3  # a finite model's conditionals are not exactly those of one joint


def test_fine_tuning_with_the_consistency_penalty_records_it(tmp_path):
    torch.set_num_threads(1)
    train_main(["--out", str(tmp_path / "base"), "--steps", "5", "--dim", "32", "--layers", "1", "--heads", "2",
                "--batch-size", "16"])
    train_main(["--out", str(tmp_path / "tuned"), "--steps", "12", "--batch-size", "16",
                "--init", str(tmp_path / "base"), "--consistency", "0.5"])
    model, _, config = load_small_model(tmp_path / "tuned")
    assert config["architecture"]["dim"] == 32 and config["training"]["consistency"] == 0.5
    rows = [line.split(",") for line in (tmp_path / "tuned" / "loss.csv").read_text().splitlines()[1:]]
    assert float(rows[-1][3]) > 0  # the penalty's running mean is logged
    with pytest.raises(ValueError, match="consistency"):
        train_main(["--out", str(tmp_path / "x"), "--steps", "1", "--consistency", "-1"])


def test_load_refuses_a_directory_without_weights(tmp_path):
    with pytest.raises(ValueError, match="path"):
        load_small_model(tmp_path)


# Near-greedy accuracy of the bundled model on 50 test problems per family (rule top_prob at
# τ = 1e-3, batched), measured when it was trained: countdown 0.52, arith 0.86, program 0.44.
# The floors sit about two binomial standard errors (≈ 0.07 at n = 50) below.
GREEDY_FLOORS = {"countdown": 0.38, "arith": 0.72, "program": 0.30}


@pytest.mark.parametrize("family_name", sorted(GREEDY_FLOORS))
def test_bundled_model_loads_offline_and_solves_test_problems(family_name):
    from dllm_mcmc import load_model

    torch.set_num_threads(1)
    model, codec = load_model("tasks-small")
    family = FAMILIES[family_name]
    problems = family.generate("test", 50, seed=0)
    prompts = torch.stack([codec.encode(family.format_prompt(p)) for p in problems])
    traj = decode(model, prompts, codec.gen_length, rule="top_prob", temperature=1e-3,
                  num_samples=len(problems), generator=torch.Generator().manual_seed(0))
    accuracy = sum(family.verify(p, codec.decode(row)) for p, row in zip(problems, traj.tokens)) / 50
    assert accuracy >= GREEDY_FLOORS[family_name], accuracy


def test_load_model_names_the_bundled_models():
    from dllm_mcmc import load_model

    with pytest.raises(ValueError, match="tasks-small"):
        load_model("no-such-model")
