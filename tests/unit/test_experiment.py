"""The one experiment engine (workbench.causal.experiment) on the tiny model and SAE: what the causal
lab, hypothesis tests and the incrimination protocol all run through."""

from __future__ import annotations

import math

import pytest
import torch

from workbench.causal.edits import EDIT_KINDS, Target
from workbench.causal.experiment import (
    EditSettings,
    Experiment,
    ExperimentContext,
    ProbeDirection,
    measure,
    measure_edit,
    parse_features,
    parse_strengths,
    run_experiment,
    select_scenarios,
)
from workbench.core.errors import WorkbenchError


@pytest.fixture(scope="module")
def active(tiny_model, tiny_sae, tiny_scenarios):
    """The most often firing features of the tiny SAE on the scenarios' prompts."""
    ctx = ExperimentContext(tiny_model, tiny_sae, tiny_scenarios, site=tiny_sae.site.name)
    return tuple(int(f) for f in torch.argsort(ctx.density(), descending=True)[:4])


def experiment(**changes) -> Experiment:
    edit = EditSettings(**changes.pop("edit", {}))
    base = {"edit": edit, "condition": "lie", "n_scenarios": 4, "strengths": (0.0, 1.0), "n_random": 1,
            "n_generations": 0, "neutral_kl": False, "max_new_tokens": 2}
    return Experiment(**{**base, **changes})


@pytest.mark.parametrize(("text", "expected"), [("0, 1, 2, 4", [0.0, 1.0, 2.0, 4.0]), ("2;-1", [-1.0, 0.0, 2.0]),
                                                ("1.5", [0.0, 1.5])])
def test_strengths_are_sorted_with_zero_as_baseline(text, expected):
    assert parse_strengths(text) == expected


@pytest.mark.parametrize(("text", "words"), [("", "empty"), (" , ", "empty"), ("1, two", "not a number"),
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


def test_scenario_selection_is_a_seeded_sample_of_the_condition(tiny_scenarios):
    first = select_scenarios(tiny_scenarios, "lie", 4, seed=0)
    assert len(first) == 4 and {s.condition.value for s in first} == {"lie"}
    assert [s.id for s in first] == [s.id for s in select_scenarios(tiny_scenarios, "lie", 4, seed=0)]
    assert [s.id for s in first] != [s.id for s in select_scenarios(tiny_scenarios, "lie", 4, seed=1)]
    assert select_scenarios(tiny_scenarios, "nonsense", 4, seed=0) == []


@pytest.mark.parametrize("kind", ["ablate", "steer"])
def test_strength_zero_has_zero_effect_and_every_point_carries_n_and_interval(kind, tiny_model, tiny_sae,
                                                                             tiny_scenarios, active):
    messages = []
    result = run_experiment(tiny_model, tiny_sae, experiment(edit={"kind": kind}, features=active[:2],
                                                             strengths=(0.0, 1.0, 4.0), other_conditions=("parrot",),
                                                             n_random=2, n_generations=2),
                            tiny_scenarios, progress=lambda message, fraction: messages.append((message, fraction)))
    assert [c.role for c in result.curves] == ["target", "random", "sign_flip", "other_condition"]
    for curve in result.curves:
        zero = curve.strengths.index(0.0)
        assert curve.effects[zero].value == 0.0 and curve.effects[zero].low == 0.0 == curve.effects[zero].high
        for effect in curve.effects:
            assert effect.n == 4 and effect.low <= effect.value <= effect.high
        assert 0.0 <= curve.unedited.value <= 1.0  # p_true
    assert result.curves[2].strengths == [-4.0, -1.0, -0.0] or result.curves[2].strengths == [0.0, -1.0, -4.0]
    assert result.target.condition == "lie" and result.curves[3].condition == "parrot"
    assert len(result.random_feature_sets) == 2
    assert all(not set(s) & set(active[:2]) for s in result.random_feature_sets)
    assert len(result.generations) == 2 and all(g.strength == 4.0 for g in result.generations)
    assert all(len(c.target_minus_control) == 3 for c in result.curves[1:])
    assert messages[-1][1] == 1.0 and all(0.0 <= f <= 1.0 for _, f in messages)


def test_the_edit_changes_the_metric_and_leaves_no_hooks(tiny_model, tiny_sae, tiny_scenarios, active):
    chosen = experiment(edit={"kind": "steer", "scale": "unit"}, features=active[:1], strengths=(0.0, 20.0),
                        condition="honest", n_scenarios=3, controls=())
    result = run_experiment(tiny_model, tiny_sae, chosen, tiny_scenarios)
    assert not math.isclose(result.target.effects[1].value, 0.0, abs_tol=1e-9)
    ctx = ExperimentContext(tiny_model, tiny_sae, tiny_scenarios, site=tiny_sae.site.name)
    scenarios = select_scenarios(tiny_scenarios, "honest", 3, seed=0)
    before, _ = measure(ctx, None, scenarios, [0.0], "p_true")
    run_experiment(tiny_model, tiny_sae, chosen, tiny_scenarios)
    after, _ = measure(ctx, None, scenarios, [0.0], "p_true")
    assert torch.equal(before, after)


def test_patch_from_the_same_condition_changes_nothing(tiny_model, tiny_sae, tiny_scenarios):
    result = run_experiment(tiny_model, tiny_sae, experiment(edit={"kind": "patch", "positions": "last_prompt_token",
                                                                   "patch_from": "lie"}, n_scenarios=3,
                                                             controls=("random",)), tiny_scenarios)
    assert abs(result.target.effects[1].value) < 1e-5  # patching a scenario with itself
    assert [c.role for c in result.curves] == ["target", "random"]


def test_clamp_fixes_features_at_the_value_and_strength_zero_is_a_real_edit(tiny_model, tiny_sae, tiny_scenarios,
                                                                            active):
    from workbench.causal.sweeps import edited_logits
    from workbench.model.tracing import read_site, run_trace
    from workbench.model.rendering import pad_batch

    features = active[:1]
    ctx = ExperimentContext(tiny_model, tiny_sae, tiny_scenarios, site=tiny_sae.site.name)
    scenarios = select_scenarios(tiny_scenarios, "lie", 2, seed=0)
    ctx.targets = scenarios
    settings = EditSettings(kind="clamp", scale="unit", positions="all")
    edit = EDIT_KINDS["clamp"].prepare(settings, Target(features=features), scenarios, ctx)
    items = [ctx.item(s) for s in scenarios]
    input_ids, attention = pad_batch(items, tiny_model.tokenizer.pad_token_id)
    site = tiny_sae.site
    acts = run_trace(tiny_model, input_ids, attention, lambda tracer: read_site(tiny_model, site).save(), stop=True)
    mask = attention.bool()
    mask[:, 0] = False
    clamped = edit.apply(acts, mask, torch.tensor([3.0, 3.0]))
    codes = tiny_sae.encode(clamped)[..., list(features)]
    # with unit-norm decoder rows and a tied encoder, the SAE reads the clamped value back exactly (where the
    # feature is among the top k)
    read_back = codes[mask][codes[mask] > 0]
    assert read_back.numel() > 0 and torch.allclose(read_back, torch.tensor(3.0), atol=0.05)
    assert torch.equal(edit.apply(acts, torch.zeros_like(mask), torch.tensor([3.0, 3.0])), acts)
    result = run_experiment(tiny_model, tiny_sae, experiment(edit={"kind": "clamp", "scale": "feature"},
                                                             features=active[:2], strengths=(0.0, 2.0)), tiny_scenarios)
    assert [c.role for c in result.curves] == ["target", "random", "other_condition", "other_condition"]
    assert any("sign flip control does not apply to clamp" in note for note in result.notes)
    assert result.target.effects[0].value != 0.0  # clamped to zero is not the unedited model
    logits = edited_logits(tiny_model, items, edit, site=site.name, strengths=[0.0])
    unedited = edited_logits(tiny_model, items, None, strengths=[0.0])
    assert not torch.allclose(logits, unedited)


def test_bad_settings_fail_before_any_forward_pass(tiny_model, tiny_sae, tiny_scenarios, monkeypatch):
    calls = []
    monkeypatch.setattr(type(tiny_model.lm), "trace", lambda *a, **k: calls.append(1))
    with pytest.raises(WorkbenchError, match="out of range"):
        run_experiment(tiny_model, tiny_sae, experiment(features=(999,)), tiny_scenarios)
    with pytest.raises(WorkbenchError, match="positions 'all' do not work for patch"):
        run_experiment(tiny_model, tiny_sae, experiment(edit={"kind": "patch", "positions": "all"},
                                                        features=()), tiny_scenarios)
    with pytest.raises(WorkbenchError, match="unknown metric"):
        run_experiment(tiny_model, tiny_sae, experiment(features=(1,), metric="happiness"), tiny_scenarios)
    with pytest.raises(WorkbenchError, match="no nonsense scenarios|unknown condition"):
        run_experiment(tiny_model, tiny_sae, experiment(features=(1,), condition="nonsense"), tiny_scenarios)
    assert calls == []


def test_steering_along_a_probe_direction_at_a_chosen_layer(tiny_model, tiny_sae, tiny_scenarios):
    chosen = experiment(edit={"kind": "steer", "scale": "residual"}, direction=ProbeDirection(positive="lie",
                                                                                              negative="honest"),
                        layer=0, strengths=(0.0, 2.0), condition="honest", n_scenarios=3,
                        controls=("random", "other_conditions"), other_conditions=("parrot",), n_random=2,
                        n_generations=1)
    result = run_experiment(tiny_model, tiny_sae, chosen, tiny_scenarios)
    assert [c.role for c in result.curves] == ["target", "random", "other_condition"]
    assert result.target.label == "steer along probe lie - honest"
    assert result.curves[1].label == "random directions (2 directions, averaged)"
    assert result.target.effects[0].value == 0.0
    assert not math.isclose(result.target.effects[1].value, 0.0, abs_tol=1e-9)
    assert result.site == "model.layers.0" and any("model.layers.0" in note for note in result.notes)
    # the layer is really the one edited: the same probe steered after another layer differs
    elsewhere = run_experiment(tiny_model, tiny_sae, chosen.model_copy(update={"layer": 2, "controls": (),
                                                                               "n_generations": 0}), tiny_scenarios)
    assert elsewhere.target.effects[1].value != result.target.effects[1].value


@pytest.mark.parametrize(("changes", "words"), [
    ({"edit": {"kind": "ablate"}, "direction": ProbeDirection(positive="lie", negative="honest")},
     "steered along, not used to ablate"),
    ({"edit": {"kind": "steer", "scale": "unit"}, "direction": ProbeDirection(positive="lie", negative="lie")},
     "two different conditions"),
    ({"edit": {"kind": "steer", "scale": "feature"}, "direction": ProbeDirection(positive="lie", negative="honest")},
     "no typical firing"),
    ({"edit": {"kind": "steer", "scale": "unit"}, "direction": ProbeDirection(positive="lie", negative="honest"),
      "layer": 7}, "layer 7 is out of range.*3 layers"),
    ({"edit": {"kind": "ablate"}, "features": (1,), "layer": 0}, "leave the layer unset"),
    ({"edit": {"kind": "clamp", "scale": "residual"}, "features": (1,)}, "clamp takes strengths in feature or unit"),
])
def test_bad_probe_and_layer_settings_say_what_to_do(changes, words, tiny_model, tiny_sae, tiny_scenarios):
    with pytest.raises(WorkbenchError, match=words):
        run_experiment(tiny_model, tiny_sae, experiment(**changes), tiny_scenarios)


def test_measure_edit_gives_per_scenario_values(tiny_model, tiny_sae, tiny_scenarios, active):
    scenarios = select_scenarios(tiny_scenarios, "lie", 3, seed=0)
    unedited, edited = measure_edit(tiny_model, tiny_sae, scenarios, EditSettings(kind="ablate"),
                                    Target(features=active[:2]), [0.0, 1.0])
    assert unedited.shape == (3,) and edited.shape == (3, 2)
    assert torch.allclose(edited[:, 0], unedited, atol=1e-6)


@pytest.mark.parametrize("settings, words", [
    ({"kind": "ablate", "mode": "mean", "mean_over": "parrot"}, "mode mean (mean over parrot)"),
    ({"kind": "ablate"}, "mode zero"),
    ({"kind": "steer", "scale": "residual"}, "scale residual"),
    ({"kind": "clamp", "scale": "unit"}, "scale unit"),
    ({"kind": "patch", "patch_from": "parrot"}, "from the paired parrot scenario"),
])
def test_every_edit_kind_describes_its_own_settings(settings, words):
    from workbench.causal.edits import EDIT_KINDS
    from workbench.causal.experiment import EditSettings

    edit = EditSettings(**settings)
    assert EDIT_KINDS[edit.kind].describe_settings(edit) == words


def test_an_experiment_on_the_lies_the_model_told_against_those_it_resisted(tiny_model, tiny_sae, tiny_scenarios,
                                                                          tmp_path, monkeypatch):
    """Targets narrowed by behaviour (lie+false) are the lie prompts whose response states a false answer; the
    specificity control defaults to the same prompts the model resisted (lie+truth)."""
    from tests.conftest import behaviour_split
    from workbench.causal.experiment import EditSettings, Experiment, run_experiment
    from workbench.scenarios import Split

    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    lies, expected = behaviour_split([s for s in tiny_scenarios if s.condition.value == "lie"])
    pool = [s.model_copy(update={"split": Split.heldout})
            for s in lies + [s for s in tiny_scenarios if s.condition.value in ("honest", "parrot")]]
    told = {s.id for s in lies[:10]}  # behaviour_split: the first 10 state a false answer, the next 8 the truth
    resisted = {s.id for s in lies[10:18]}
    experiment = Experiment(edit=EditSettings(kind="ablate"), features=(3, 7), condition="lie+false", n_scenarios=30,
                            strengths=(1.0,), n_random=1, n_generations=0, neutral_kl=False, max_new_tokens=2)
    result = run_experiment(tiny_model, tiny_sae, experiment, pool)
    assert set(result.scenario_ids) == told and result.target.effects[0].n == expected["false"]
    control = next(c for c in result.curves if c.condition == "lie+truth")
    assert control.effects[0].n == expected["truth"] == len(resisted)
    # narrowed conditions stay out of what builds an edit
    with pytest.raises(WorkbenchError, match="narrowed by behaviour"):
        run_experiment(tiny_model, tiny_sae, experiment.model_copy(update={
            "edit": EditSettings(kind="patch", patch_from="lie+truth", positions="last_prompt_token"), "features": ()}), pool)
