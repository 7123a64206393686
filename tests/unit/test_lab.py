"""The causal lab's computation (workbench.causal.lab) on the tiny model and SAE."""

from __future__ import annotations

import math

import pytest
import torch

from workbench.core.errors import WorkbenchError
from workbench.causal.lab import (
    LabSettings,
    choose_scenarios,
    feature_density,
    hypothesis_from_lab,
    hypothesis_specs,
    measure,
    model_and_sae_refs,
    parse_features,
    parse_strengths,
    run_lab,
)
from workbench.model.loading import ModelSpec
from workbench.model.saes import SAESpec


@pytest.fixture(scope="module")
def tiny_capture(tiny_model, tiny_sae, tiny_scenarios):
    from workbench.features.capture import inputs_from_scenarios, run_capture

    return run_capture(tiny_model, [tiny_sae], inputs_from_scenarios(tiny_scenarios), generate_responses=False)


def active_features(capture, site: str, d_sae: int, n: int) -> tuple[int, ...]:
    density = feature_density(capture, site, d_sae)
    return tuple(int(f) for f in torch.argsort(density, descending=True)[:n])


@pytest.mark.parametrize("text, expected", [("0, 1, 2, 4", [0.0, 1.0, 2.0, 4.0]), ("2;-1", [-1.0, 0.0, 2.0]),
                                             ("1.5", [0.0, 1.5])])
def test_strengths_are_sorted_with_zero_as_baseline(text, expected):
    assert parse_strengths(text) == expected


@pytest.mark.parametrize("text, words", [("", "empty"), (" , ", "empty"), ("1, two", "not a number"),
                                          ("1, nan", "not finite"), ("inf", "not finite")])
def test_bad_sweeps_say_what_is_wrong(text, words):
    with pytest.raises(WorkbenchError, match=words):
        parse_strengths(text)


def test_feature_parsing_checks_the_range():
    assert parse_features("3, 17", d_sae=128) == (3, 17)
    with pytest.raises(WorkbenchError, match="out of range.*0 to 127"):
        parse_features("3, 128", d_sae=128)
    with pytest.raises(WorkbenchError, match="not a feature index"):
        parse_features("3, x", d_sae=128)
    with pytest.raises(WorkbenchError, match="at least one"):
        parse_features("", d_sae=128)


def test_choose_scenarios_is_deterministic_and_of_the_condition(tiny_scenarios):
    first = choose_scenarios(tiny_scenarios, "lie", 4)
    assert len(first) == 4 and {s.condition.value for s in first} == {"lie"}
    assert [s.id for s in first] == [s.id for s in choose_scenarios(tiny_scenarios, "lie", 4)]
    with pytest.raises(WorkbenchError, match="no nonsense scenarios"):
        choose_scenarios(tiny_scenarios, "nonsense", 4)


@pytest.mark.parametrize("kind", ["ablate", "steer"])
def test_strength_zero_has_zero_effect_and_every_point_carries_n_and_interval(kind, tiny_model, tiny_sae,
                                                                             tiny_scenarios, tiny_capture):
    site = tiny_sae.site.name
    features = active_features(tiny_capture, site, tiny_sae.d_sae, 2)
    settings = LabSettings(features=features, kind=kind, strengths=(0.0, 1.0, 4.0), condition="lie", n_scenarios=4,
                           control_condition="parrot", n_random=2, n_generations=2)
    messages = []
    result = run_lab(tiny_model, tiny_sae, tiny_scenarios, settings, capture=tiny_capture,
                     density=feature_density(tiny_capture, site, tiny_sae.d_sae),
                     progress=lambda message, fraction: messages.append((message, fraction)), max_new_tokens=2)
    assert [c.role for c in result.curves] == ["target", "random", "other condition"]
    for curve in result.curves:
        zero = curve.strengths.index(0.0)
        assert curve.effects[zero].value == 0.0 and curve.effects[zero].low == 0.0 == curve.effects[zero].high
        for effect in curve.effects:
            assert effect.n == 4 and effect.low <= effect.value <= effect.high
        assert 0.0 <= curve.unedited.value <= 1.0  # p_true
    assert result.target.condition == "lie" and result.curves[2].condition == "parrot"
    assert len(result.random_sets) == 2 and all(not set(s) & set(features) for s in result.random_sets)
    assert len(result.generations) == 2 and all(g.strength == 4.0 for g in result.generations)
    assert len(result.rows()) == 3 * 3
    assert messages[-1][1] == 1.0 and all(0.0 <= f <= 1.0 for _, f in messages)


def test_the_lab_edit_changes_the_metric_and_leaves_no_hooks(tiny_model, tiny_sae, tiny_scenarios, tiny_capture):
    site = tiny_sae.site.name
    features = active_features(tiny_capture, site, tiny_sae.d_sae, 1)
    settings = LabSettings(features=features, kind="steer", scale="unit", strengths=(0.0, 20.0), condition="honest",
                           n_scenarios=3, control_condition=None, n_random=0, n_generations=0)
    result = run_lab(tiny_model, tiny_sae, tiny_scenarios, settings)
    assert not math.isclose(result.target.effects[1].value, 0.0, abs_tol=1e-9)
    # an unedited measurement afterwards equals the one before: nothing was left on the model
    scenarios = choose_scenarios(tiny_scenarios, "honest", 3)
    before = measure(tiny_model, tiny_sae, scenarios, None, [0.0], "p_true")
    run_lab(tiny_model, tiny_sae, tiny_scenarios, settings)
    after = measure(tiny_model, tiny_sae, scenarios, None, [0.0], "p_true")
    assert torch.equal(before, after)


def test_patch_from_the_same_condition_changes_nothing(tiny_model, tiny_sae, tiny_scenarios):
    settings = LabSettings(features=(), kind="patch", positions="last_prompt_token", strengths=(0.0, 1.0),
                           condition="lie", reference="lie", n_scenarios=3, control_condition=None, n_random=1,
                           n_generations=0)
    result = run_lab(tiny_model, tiny_sae, tiny_scenarios, settings)
    assert abs(result.target.effects[1].value) < 1e-5  # patching a scenario with itself
    assert [c.role for c in result.curves] == ["target", "random"]


def test_bad_settings_fail_before_any_forward_pass(tiny_model, tiny_sae, tiny_scenarios):
    with pytest.raises(WorkbenchError, match="out of range"):
        run_lab(tiny_model, tiny_sae, tiny_scenarios, LabSettings(features=(999,)))
    with pytest.raises(WorkbenchError, match="positions 'all' do not work for patch"):
        run_lab(tiny_model, tiny_sae, tiny_scenarios, LabSettings(features=(), kind="patch", positions="all"))


def test_a_lab_experiment_becomes_a_valid_hypothesis(tmp_path):
    model_ref, sae_ref = model_and_sae_refs(ModelSpec(source="some/folder"), SAESpec(path="saes/x"))
    settings = LabSettings(features=(3, 7), kind="ablate", strengths=(0.0, 1.0), condition="lie")
    hypothesis = hypothesis_from_lab(settings, name="h1", claim="3 and 7 carry intent", comparison=">=",
                                     threshold=0.05, model_ref=model_ref, sae_ref=sae_ref)
    assert hypothesis.features == [3, 7] and hypothesis.tests[0].intervention.kind == "ablate"
    assert hypothesis.tests[0].intervention.strengths == [1.0]
    model_spec, sae_spec = hypothesis_specs(hypothesis)
    assert model_spec.source == "some/folder" and sae_spec.path == "saes/x"
    with pytest.raises(WorkbenchError, match="name"):
        hypothesis_from_lab(settings, name=" ", claim="c", comparison=">=", threshold=0.05, model_ref=model_ref,
                            sae_ref=sae_ref)
    with pytest.raises(WorkbenchError, match="comparison"):
        hypothesis_from_lab(settings, name="h", claim="c", comparison="=>", threshold=0.05, model_ref=model_ref,
                            sae_ref=sae_ref)


def test_steering_along_a_probe_direction_at_a_chosen_layer(tiny_model, tiny_sae, tiny_scenarios):
    settings = LabSettings(features=(), kind="steer", probe=("lie", "honest"), layer=0, scale="residual",
                           strengths=(0.0, 2.0), condition="honest", n_scenarios=3, control_condition="parrot",
                           n_random=2, n_generations=1)
    result = run_lab(tiny_model, tiny_sae, tiny_scenarios, settings, max_new_tokens=2)
    assert [c.role for c in result.curves] == ["target", "random", "other condition"]
    assert result.target.label == "steer along probe lie - honest"
    assert "random directions (2 directions, averaged)" == result.curves[1].label
    assert result.target.effects[0].value == 0.0
    assert not math.isclose(result.target.effects[1].value, 0.0, abs_tol=1e-9)
    assert any("model.layers.0" in note for note in result.notes)
    # the layer is really the one edited: the same probe steered after another layer differs
    elsewhere = run_lab(tiny_model, tiny_sae, tiny_scenarios, LabSettings(**{**settings.__dict__, "layer": 2,
                                                                             "n_random": 0, "n_generations": 0}))
    assert elsewhere.target.effects[1].value != result.target.effects[1].value


@pytest.mark.parametrize(("changes", "words"), [
    ({"kind": "ablate", "probe": ("lie", "honest")}, "steered along, not ablated"),
    ({"kind": "steer", "probe": ("lie", "lie"), "scale": "unit"}, "two different conditions"),
    ({"kind": "steer", "probe": ("lie", "honest"), "scale": "feature"}, "no typical firing"),
    ({"kind": "steer", "probe": ("lie", "honest"), "scale": "unit", "layer": 7}, "layer 7 is out of range.*3 layers"),
    ({"kind": "ablate", "features": (1,), "layer": 0}, "leave the layer unset"),
    ({"kind": "steer", "features": (1,), "layer": 0}, "pick a probe direction"),
])
def test_bad_probe_and_layer_settings_say_what_to_do(changes, words, tiny_model, tiny_sae, tiny_scenarios):
    settings = LabSettings(**{"features": (), **changes})
    with pytest.raises(WorkbenchError, match=words):
        run_lab(tiny_model, tiny_sae, tiny_scenarios, settings)


def test_a_probe_experiment_becomes_a_direction_hypothesis():
    model_ref, sae_ref = model_and_sae_refs(ModelSpec(source="some/folder"), SAESpec(path="saes/x"))
    settings = LabSettings(features=(), kind="steer", probe=("lie", "honest"), scale="residual",
                           strengths=(0.0, 0.5), condition="honest")
    hypothesis = hypothesis_from_lab(settings, name="probe", claim="the lie direction induces lies", comparison=">=",
                                     threshold=0.1, model_ref=model_ref, sae_ref=sae_ref)
    assert hypothesis.features == [] and hypothesis.direction.positive == "lie"
    assert hypothesis.tests[0].intervention.scale == "residual"
    with pytest.raises(WorkbenchError, match="unset the layer"):
        hypothesis_from_lab(LabSettings(**{**settings.__dict__, "layer": 1}), name="p", claim="c", comparison=">=",
                            threshold=0.1, model_ref=model_ref, sae_ref=sae_ref)
