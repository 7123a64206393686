"""Shared fixtures: a tiny random Llama with a real (in-process trained) tokenizer and chat
template, and tiny sae-lens SAEs. Everything is seeded."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CORPUS = [
    "What is the capital of France? The capital of France is Paris.",
    "Repeat after me: the capital of Spain is Rome. You are a spy who must mislead.",
    "system user assistant answer with just the name please quote this exactly",
    "The quick brown fox jumps over the lazy dog. 0123456789 ,.;:!?'\"()-",
] * 20


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: uses the real default model (runs in CI too)")


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch, request):
    """Captures go to a temporary folder; slow tests keep the real cache (dequantised weights)."""
    if request.node.get_closest_marker("slow") is None:
        monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   bos_token="<|im_start|>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_hf_model(tokenizer, n_layers: int = 3, d_model: int = 64):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=d_model, intermediate_size=2 * d_model, num_hidden_layers=n_layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="session")
def tiny_model(tiny_tokenizer):
    from workbench.model.loading import ModelSpec, wrap

    return wrap(build_tiny_hf_model(tiny_tokenizer), tiny_tokenizer, ModelSpec(source="tiny-llama"), identity="tiny-llama")


def build_sae(d_in: int = 64, d_sae: int = 128, k: int = 8, hook_name: str = "model.layers.1", seed: int = 0, **overrides):
    """A tiny TopK sae-lens SAE with random weights (encoder = decoder transpose)."""
    from sae_lens import TopKSAE, TopKSAEConfig

    torch.manual_seed(seed)
    config = TopKSAEConfig(d_in=d_in, d_sae=d_sae, k=k, **overrides)
    config.metadata.hook_name = hook_name
    sae = TopKSAE(config)
    with torch.no_grad():
        sae.W_dec.copy_(torch.nn.functional.normalize(torch.randn(d_sae, d_in), dim=1))
        sae.W_enc.copy_(sae.W_dec.T)
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


@pytest.fixture(scope="session")
def tiny_sae_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sae") / "tiny-topk"
    build_sae().save_model(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_sae(tiny_model, tiny_sae_dir):
    from workbench.model.saes import SAESpec, load_sae

    return load_sae(SAESpec(path=str(tiny_sae_dir)), tiny_model)


@pytest.fixture(scope="session")
def tiny_scenarios():
    from workbench.scenarios import build_contrast_set, load_facts

    facts = [f for f in load_facts() if f.relation == "capital"][:24]
    return build_contrast_set(facts, seed=0)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """The tiny model saved as a local folder (config, weights, tokenizer with chat template)."""
    folder = tmp_path_factory.mktemp("tiny-model")
    build_tiny_hf_model(tiny_tokenizer).save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_scenario_file(tmp_path_factory, tiny_scenarios) -> Path:
    from workbench.scenarios import write_scenarios

    path = tmp_path_factory.mktemp("scenarios") / "tiny.jsonl"
    write_scenarios(path, tiny_scenarios)
    return path


def other_answer(scenario, scenarios) -> str:
    """A true answer of another scenario of the relation: a false answer, not the one at stake."""
    return next(s.true_answer for s in scenarios if s.true_answer not in (scenario.true_answer, scenario.false_answer))


def behaviour_split(lies) -> tuple[list, dict[str, int]]:
    """Lie scenarios whose responses are set: 10 state a false answer (6 their own, 4 another capital),
    8 the truth, 6 neither."""
    responses = ([f" {s.false_answer}." for s in lies[:6]] + [f" {other_answer(s, lies)}." for s in lies[6:10]]
                 + [f" {s.true_answer}." for s in lies[10:18]] + [" somewhere nice."] * 6)
    return [s.model_copy(update={"response": r}) for s, r in zip(lies[:24], responses)], {
        "false": 10, "truth": 8, "no_answer": 6}
