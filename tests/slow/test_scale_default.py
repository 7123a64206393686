"""The scale study on the real default model: base and liar organism side by side, on a few facts."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_scale_on_the_default_base_and_organism(tmp_path):
    from workbench.core.constants import DEFAULT_SCENARIOS
    from workbench.report.scale import build_scale_report, write_scale_outputs
    from workbench.scale import parse_model_spec, run_study
    from workbench.scenarios import read_scenarios

    models = [parse_model_spec("default,label=base"), parse_model_spec("default,adapter=smollm2-liar,label=liar")]
    record = run_study(models, read_scenarios(DEFAULT_SCENARIOS), scenario_file="scenarios/default.jsonl",
                       depths=(0.25, 0.5, 0.75), max_facts=32, max_new_tokens=8, seed=0)
    base, liar = record.models
    assert base.n_params == liar.n_params and base.n_layers == 30
    # the base model knows most of these facts and answers them; the organism lies far more on lie prompts
    assert base.behaviour.honest_accuracy.value > 0.5
    assert liar.behaviour.lie_rate.value > base.behaviour.lie_rate.value
    # the lie prompts differ in their system prompt: a probe separates them from honest ones on both models
    assert all(p.auroc["lie_vs_honest"] is not None for p in liar.probes)
    assert max(p.auroc["lie_vs_honest"].value for p in liar.probes) > 0.8
    assert liar.steering is not None and liar.steering.effect.n > 0
    document = build_scale_report(record)
    assert [s.title for s in document.sections][:3] == ["1. Models", "2. Behaviour", "3. Probes across depth"]
    written = write_scale_outputs(record, tmp_path, figures=False)
    assert written["html"].stat().st_size > 10_000
