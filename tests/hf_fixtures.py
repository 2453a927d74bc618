"""Tiny transformers masked LMs and a character tokenizer, built offline for the tests."""

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import BertConfig, BertForMaskedLM, PreTrainedTokenizerFast, RobertaConfig, RobertaForMaskedLM

SPECIALS = ["[PAD]", "[UNK]", "[MASK]", "[EOS]"]
CHARACTERS = list("abcdefghij0123456789+=")


def char_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {token: i for i, token in enumerate(SPECIALS + CHARACTERS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    backend.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]", mask_token="[MASK]", eos_token="[EOS]"
    )


def tiny_model(kind: str, vocab_size: int) -> torch.nn.Module:
    torch.manual_seed(0)
    common = dict(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, max_position_embeddings=64, pad_token_id=0)
    if kind == "bert":
        return BertForMaskedLM(BertConfig(**common))
    return RobertaForMaskedLM(RobertaConfig(**common, bos_token_id=1, eos_token_id=3))
