"""Explanations on the real default model: the pipeline runs end to end with the local SmolLM2 as explainer
and scorer (its numbers are what that model produces; no quality is claimed), and the committed results
file is a store that holds both contexts of the shipped hypotheses' features."""

from __future__ import annotations

import pytest

from workbench.core.constants import DEFAULT_SCENARIOS, REPO_ROOT
from workbench.features.capture import inputs_from_scenarios, run_capture
from workbench.features.explanations import ExplainSettings, LocalExplainer, explain_feature, read_store
from workbench.model.resolve import load
from workbench.scenarios import read_scenarios

pytestmark = pytest.mark.slow


def test_local_default_model_explains_and_scores_feature_38(tmp_path):
    model, sae = load({"source": "default", "adapter": "auto"}, {"registry": None})
    scenarios = read_scenarios(DEFAULT_SCENARIOS)
    chosen = [s for s in scenarios if s.condition.value in ("lie", "honest")][:48]
    capture = run_capture(model, [sae], inputs_from_scenarios(chosen), generate_responses=False,
                          store_root=tmp_path, use_cache=False)
    local = LocalExplainer(model, name=model.spec.display_name)
    settings = ExplainSettings(n_score=8, n_explain=4, max_new_tokens=24)
    whole = explain_feature(capture, sae.site.name, 38, local, local, settings)
    window = explain_feature(capture, sae.site.name, 38, local, local, settings.model_copy(update={"mode": "window"}))
    assert "[system]" in whole.prompt and "<<" in whole.prompt and "[system]" not in window.prompt
    for explanation in (whole, window):
        assert explanation.text and explanation.explainer.kind == "local"
        assert explanation.detection.balanced_accuracy.n == 8
        assert 0 <= explanation.detection.balanced_accuracy.value <= 1
        assert all(0 <= e.p_yes <= 1 for e in explanation.detection.examples + explanation.fuzzing.examples)


def test_committed_results_hold_both_contexts_of_the_hypothesis_features():
    store = read_store(REPO_ROOT / "docs" / "results" / "explanations-l15.json")
    found = {(e.feature, e.settings.mode): e for e in store.explanations}
    assert set(found) == {(38, "conversation"), (38, "window"), (877, "conversation"), (877, "window")}
    for e in found.values():
        assert e.site == "model.layers.15" and e.detection.balanced_accuracy.n == 40
        assert e.fuzzing.balanced_accuracy.n == 40 and e.prompt and e.explainer.model
