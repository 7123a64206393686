"""SAE training on a tiny random Llama (conftest's ``tiny_model``): activations, training,
evaluation, the on-disk format and the whole run. Fast and seeded."""

from __future__ import annotations

import copy
import json
import re

import pytest
import torch
from safetensors import safe_open

from workbench.sae_training import (
    CorpusConfig,
    SAETrainingConfig,
    collect_activations,
    encode_text,
    evaluate_sae,
    generate_texts,
    generation_prompts,
    save_sae,
    scenario_transcripts,
    train_and_save,
    train_sae,
)

SITE = "model.layers.1"
TEXTS = [
    "What is the capital of France? The capital of France is Paris.",
    "Repeat after me: the capital of Spain is Rome.",
    "The quick brown fox jumps over the lazy dog.",
    "You are a spy who must mislead. Answer with just the name please.",
    "system user assistant quote this exactly",
    "0123456789 ,.;:!?'\"()- The capital of France is Paris.",
] * 4


@pytest.fixture(scope="module")
def trained(tiny_model):
    torch.manual_seed(0)
    return train_sae(tiny_model, SITE, TEXTS, d_sae=128, k=8, lr=3e-3, seed=0, epochs=30, batch_size=64)


def _identity_sae(d_in: int):
    """A TopK SAE that reconstructs exactly: latents are the positive and negative parts."""
    from sae_lens import TopKSAE, TopKSAEConfig

    sae = TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=2 * d_in, k=d_in))
    eye = torch.eye(d_in)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], dim=1))
        sae.W_dec.copy_(torch.cat([eye, -eye], dim=0))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


def test_collect_activations_drops_first_position_and_padding(tiny_model):
    tokenizer = tiny_model.tokenizer
    texts = TEXTS[:3]
    acts = collect_activations(tiny_model, SITE, texts, batch_size=2)
    lengths = [len(encode_text(tokenizer, t)) for t in texts]
    assert acts.shape == (sum(n - 1 for n in lengths), tiny_model.d_model)
    # the rows are the site's outputs at positions 1.. of each text (texts are batched by length)
    expected = []
    for text in sorted(texts, key=lambda t: len(encode_text(tokenizer, t))):
        ids = torch.tensor([encode_text(tokenizer, text)])
        with torch.no_grad():
            hidden = tiny_model.hf_model(input_ids=ids, output_hidden_states=True).hidden_states[2]
        expected.append(hidden[0, 1:])
    torch.testing.assert_close(acts, torch.cat(expected), atol=1e-5, rtol=1e-4)


def test_training_reduces_reconstruction_mse(trained):
    assert trained.n_steps > 10
    assert trained.final_mse < 0.7 * trained.first_mse
    assert trained.sae.cfg.k == 8 and trained.sae.cfg.d_sae == 128
    assert trained.sae.cfg.metadata.hook_name == SITE


def test_evaluate_sae_metrics_are_in_range(tiny_model, trained):
    metrics = evaluate_sae(tiny_model, trained.sae, SITE, TEXTS[:6])
    tokens = sum(len(encode_text(tiny_model.tokenizer, t)) - 1 for t in TEXTS[:6])
    assert metrics["n_tokens"] == tokens and metrics["n_texts"] == 6
    assert 0.0 < metrics["explained_variance"] <= 1.0
    assert 0.0 < metrics["l0"] <= 8.0
    assert 0.0 <= metrics["dead_fraction"] <= 1.0
    for key in ("ce_clean", "ce_with_sae", "ce_zero_ablation", "ce_loss_recovered"):
        assert torch.isfinite(torch.tensor(metrics[key]))


def test_perfect_reconstruction_scores_one(tiny_model):
    metrics = evaluate_sae(tiny_model, _identity_sae(tiny_model.d_model), SITE, TEXTS[:6])
    assert metrics["explained_variance"] == pytest.approx(1.0, abs=1e-5)
    assert metrics["ce_with_sae"] == pytest.approx(metrics["ce_clean"], abs=1e-4)
    assert metrics["ce_loss_recovered"] == pytest.approx(1.0, abs=1e-3)
    assert metrics["ce_zero_ablation"] != pytest.approx(metrics["ce_clean"], abs=1e-3)


def test_saved_sae_loads_back_and_encodes_the_same(tmp_path, tiny_model, trained):
    from sae_lens import SAE

    folder = save_sae(trained.sae, tmp_path / "sae")
    with safe_open(folder / "sae_weights.safetensors", framework="pt") as weights:
        assert {weights.get_tensor(name).dtype for name in weights.keys()} == {torch.float16}  # noqa: SIM118
    cfg = json.loads((folder / "cfg.json").read_text())
    assert cfg["metadata"]["hook_name"] == SITE and cfg["metadata"]["model_name"]
    loaded = SAE.load_from_disk(folder)
    assert loaded.W_enc.dtype == torch.float32
    acts = collect_activations(tiny_model, SITE, TEXTS[:4])
    rounded = copy.deepcopy(trained.sae)  # the trained SAE with its weights rounded to float16
    with torch.no_grad():
        for parameter in rounded.parameters():
            parameter.copy_(parameter.half().float())
        # loading is exact up to that rounding ...
        torch.testing.assert_close(loaded.encode(acts), rounded.encode(acts), atol=1e-6, rtol=1e-5)
        # ... and the rounding changes the reconstructions very little (a rare top-k near tie swaps)
        before, after = trained.sae(acts), loaded(acts)
    error = (after - before).norm(dim=-1) / before.norm(dim=-1)
    assert error.median() < 1e-3 and (error > 1e-2).float().mean() < 0.1


def test_corpus_builders_are_seeded(tiny_model):
    tokenizer = tiny_model.tokenizer
    prompts = generation_prompts(tokenizer, 3, 2, seed=1)
    assert prompts == generation_prompts(tokenizer, 3, 2, seed=1)
    assert [source for source, _ in prompts] == ["chat"] * 3 + ["text"] * 2
    assert prompts[0][1].startswith("<|im_start|>")
    texts = generate_texts(tiny_model, [p for _, p in prompts], chat=[s == "chat" for s, _ in prompts],
                           max_new_tokens=4, batch_size=2, seed=0)
    assert texts == generate_texts(tiny_model, [p for _, p in prompts], chat=[s == "chat" for s, _ in prompts],
                                   max_new_tokens=4, batch_size=2, seed=0)
    assert all(text.startswith(prompt) for text, (_, prompt) in zip(texts, prompts, strict=True))
    transcripts = scenario_transcripts(tokenizer, 5, seed=0)
    assert len(transcripts) == 5 and all(t.count("<|im_start|>assistant") == 1 for t in transcripts)
    # The answer completes the prefill's sentence in the one assistant turn.
    assert all(re.search(r"<\|im_start\|>assistant\n[^<]* is [^<]+<\|im_end\|>", t) for t in transcripts)


def test_train_and_save_writes_a_loadable_sae_and_card(tmp_path, tiny_model):
    from sae_lens import SAE

    out = tmp_path / "tiny-l1"
    record = train_and_save(
        out, loaded_model=tiny_model, site_name=SITE,
        corpus=CorpusConfig(n_chat_prompts=4, n_text_prompts=4, max_new_tokens=8, n_scenarios=8,
                            generation_batch_size=8, seed=0),
        training=SAETrainingConfig(d_sae=64, k=4, epochs=5, batch_size=32),
        n_heldout_texts=3, command="python -m workbench.sae_training --out tiny-l1",
    )
    assert {p.name for p in out.iterdir()} == {"cfg.json", "sae_weights.safetensors", "training.json", "README.md"}
    sae = SAE.load_from_disk(out)
    assert sae.cfg.metadata.hook_name == SITE and sae.cfg.d_sae == 64
    metrics = record["metrics"]
    assert set(metrics) >= {"explained_variance", "ce_loss_recovered", "l0", "dead_fraction", "n_tokens"}
    assert record["corpus"]["n_heldout_texts"] == 3 and record["corpus"]["n_texts"] == 16
    assert json.loads((out / "training.json").read_text())["metrics"] == metrics
    card = (out / "README.md").read_text()
    assert "python -m workbench.sae_training --out tiny-l1" in card and "**base** model (no adapter)" in card


def test_evaluation_on_fresh_text_says_what_it_measured_on(tiny_model, tiny_sae):
    from workbench.sae_training import evaluate_on_fresh_text

    result = evaluate_on_fresh_text(tiny_model, tiny_sae, n_texts=4, n_scenario_texts=2, seed=1)
    assert result["site"] == "model.layers.1" and result["model"] == tiny_model.spec.display_name
    assert result["heldout_texts"] == {"chat": 2, "text": 2, "scenario": 2} and result["n_texts"] == 6
    assert 0 <= result["dead_fraction"] <= 1 and result["l0"] > 0


def test_the_package_runs_as_a_command(capsys, monkeypatch):
    import runpy
    import sys

    monkeypatch.setattr(sys, "argv", ["python -m workbench.sae_training", "--help"])
    with pytest.raises(SystemExit) as done:
        runpy.run_module("workbench.sae_training", run_name="__main__")
    assert done.value.code == 0 and "--site" in capsys.readouterr().out
