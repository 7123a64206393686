"""AUROC statistics and contrast ranking on planted data."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.features.capture import Capture, CapturedItem, CaptureMeta, CapturedSAE, SiteActivations
from workbench.features.contrast import contrast, item_feature_matrix
from workbench.core.errors import WorkbenchError
from workbench.core.stats import auroc, bootstrap_auroc, wilson_interval

values = st.lists(st.integers(min_value=0, max_value=4).map(float), min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(values, values)
def test_auroc_equals_pairwise_definition(pos, neg):
    expected = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))
    assert float(auroc(torch.tensor(pos), torch.tensor(neg))) == pytest.approx(expected, abs=1e-6)


def test_auroc_is_vectorised_over_columns():
    pos = torch.tensor([[1.0, 0.0], [2.0, 0.0]])
    neg = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    assert auroc(pos, neg).tolist() == [1.0, 0.0]


def test_bootstrap_interval_contains_point_and_narrows_with_n():
    generator = torch.Generator().manual_seed(0)
    small_pos, small_neg = torch.randn(10, 1, generator=generator) + 1, torch.randn(10, 1, generator=generator)
    big_pos, big_neg = torch.randn(400, 1, generator=generator) + 1, torch.randn(400, 1, generator=generator)
    p, lo, hi = bootstrap_auroc(small_pos, small_neg, n_boot=300)
    P, LO, HI = bootstrap_auroc(big_pos, big_neg, n_boot=300)
    assert lo <= p <= hi and LO <= P <= HI
    assert (HI - LO) < (hi - lo)


def test_wilson_interval_edges():
    zero = wilson_interval(0, 20)
    assert zero.value == 0 and zero.low == 0 and 0 < zero.high < 0.2
    full = wilson_interval(20, 20)
    assert full.high == 1 and 0.8 < full.low < 1


def planted_capture(n_per_condition: int = 30, d_sae: int = 16, planted: int = 3, seed: int = 0) -> Capture:
    """Items of 4 tokens each (last one = last prompt token). Feature ``planted`` fires strongly
    at the last prompt token of lie items and weakly on parrot; the rest is noise."""
    generator = torch.Generator().manual_seed(seed)
    items, rows_features, rows_values, counts = [], [], [], []
    conditions = ["lie"] * n_per_condition + ["parrot"] * n_per_condition + ["honest"] * 5
    for index, condition in enumerate(conditions):
        items.append(CapturedItem(item_id=f"s{index}", kind="scenario", condition=condition, prompt_length=4,
                                  token_start=4 * index, n_tokens=4))
        for position in range(4):
            features = torch.randperm(d_sae, generator=generator)[:3]
            features = features[features != planted]
            vals = torch.rand(len(features), generator=generator) + 0.1
            if position == 3:
                strength = 2.0 + torch.rand(1, generator=generator).item() if condition == "lie" else 0.0
                if condition == "parrot" and torch.rand(1, generator=generator).item() < 0.3:
                    strength = 0.5
                if strength:
                    features = torch.cat([features, torch.tensor([planted])])
                    vals = torch.cat([vals, torch.tensor([strength])])
            rows_features.append(features.to(torch.int32))
            rows_values.append(vals.float())
            counts.append(len(features))
    n_tokens = 4 * len(conditions)
    meta = CaptureMeta(key="planted", model_spec={}, model_identity="none",
                       saes=[CapturedSAE(site="model.layers.0", identity="planted", d_sae=d_sae, spec={})],
                       items=items, token_strings=["t"] * n_tokens)
    acts = SiteActivations(row_ptr=torch.cat([torch.zeros(1, dtype=torch.long), torch.tensor(counts).cumsum(0)]),
                           features=torch.cat(rows_features), values=torch.cat(rows_values), d_sae=d_sae)
    return Capture(meta=meta, token_ids=torch.zeros(n_tokens, dtype=torch.int32),
                   item_index=torch.arange(len(conditions), dtype=torch.int32).repeat_interleave(4),
                   positions=torch.arange(4, dtype=torch.int32).repeat(len(conditions)),
                   roles=torch.full((n_tokens,), 1, dtype=torch.int8), sites={"model.layers.0": acts})


def test_planted_feature_ranks_first():
    capture = planted_capture()
    result = contrast(capture, "model.layers.0", "lie", "parrot", n_boot=300)
    best = result.rows[0]
    assert best.feature == 3
    assert best.auroc > 0.9 and best.auroc_low > 0.8
    assert result.n_a == 30 and result.n_b == 30
    assert best.active_a == 30
    others = [row for row in result.rows[1:]]
    assert all(row.auroc_low < 0.5 < row.auroc_high for row in others[-3:])  # noise features straddle 0.5


def test_position_rule_changes_what_is_compared():
    capture = planted_capture()
    everywhere = contrast(capture, "model.layers.0", "lie", "parrot", position_rule="all", n_boot=200)
    assert everywhere.rows[0].feature == 3  # max over all tokens still sees the planted token
    first_tokens = item_feature_matrix(capture, "model.layers.0", "system")[1]
    assert int(first_tokens.sum()) == 0  # no system tokens in this capture


def test_dropped_features_are_counted():
    capture = planted_capture(d_sae=40)
    result = contrast(capture, "model.layers.0", "lie", "parrot", min_active=50, n_boot=100)
    assert result.n_ranked == len(result.rows)
    assert sum(result.dropped.values()) + result.n_ranked == result.n_features


def test_contrast_input_errors():
    capture = planted_capture()
    with pytest.raises(WorkbenchError, match="no items of condition 'ignorant'"):
        contrast(capture, "model.layers.0", "lie", "ignorant")
    with pytest.raises(WorkbenchError, match="only 5 items of 'honest'"):
        contrast(capture, "model.layers.0", "lie", "honest", min_items=10)
    with pytest.raises(WorkbenchError, match="two different"):
        contrast(capture, "model.layers.0", "lie", "lie")
    with pytest.raises(WorkbenchError, match="unknown aggregation"):
        contrast(capture, "model.layers.0", "lie", "parrot", aggregation="median")


def test_cli_contrast_checks_the_position_rule_before_loading_anything(monkeypatch):
    from typer.testing import CliRunner

    import workbench.model.resolve as resolve
    from workbench.cli import app

    loads = []
    monkeypatch.setattr(resolve, "load", lambda *args, **kwargs: loads.append(args))
    result = CliRunner().invoke(app, ["contrast", "lie", "parrot", "--position", "middle"])
    assert result.exit_code == 2 and "unknown position rule 'middle'; choose one of last_prompt_token" in result.output
    assert loads == []  # no model was loaded


def test_position_rules_never_select_the_attention_sink():
    capture = planted_capture(n_per_condition=5)
    for rule in ("all", "user"):
        mask = capture.position_mask(rule)
        assert not mask[capture.positions == 0].any() and mask[capture.positions > 0].all()


def test_conditions_are_listed_in_the_tables_order():
    from workbench.core.conditions import condition_colour, ordered_conditions

    assert ordered_conditions(["parrot", "lie+false", None, "lie", "parrot"]) == ["lie", "parrot", "lie+false"]
    assert condition_colour("lie") != condition_colour("parrot")
    assert condition_colour("lie+false", 0) != condition_colour("lie+truth", 1)  # anything else: a fallback colour


def test_each_row_has_its_recall_at_one_percent_fpr_on_the_honest_control():
    capture = planted_capture()
    result = contrast(capture, "model.layers.0", "lie", "parrot", n_boot=200, top=4)
    assert result.control == "honest" and result.n_control == 5 and result.fpr == 0.01
    # 5 honest items cannot resolve 1%: said, not hidden
    assert "1% FPR cannot be resolved with 5 control scores" in result.recall_note
    matrix, _ = item_feature_matrix(capture, "model.layers.0", "last_prompt_token")
    lie = [i for i, item in enumerate(capture.items) if item.condition == "lie"]
    honest = [i for i, item in enumerate(capture.items) if item.condition == "honest"]
    for row in result.rows:  # by hand: the share of lie items above the honest items' 99% quantile
        threshold = torch.quantile(matrix[honest, row.feature].double(), 0.99)
        assert row.recall_at_fpr == pytest.approx(float((matrix[lie, row.feature].double() > threshold).double().mean()))
        assert 0.0 <= row.recall_at_fpr_low <= row.recall_at_fpr_high <= 1.0
    assert result.rows[0].feature == 3 and result.rows[0].recall_at_fpr == 1.0  # never fires on honest


def test_the_control_can_be_chosen_and_must_not_overlap_side_a():
    capture = planted_capture(n_per_condition=120)
    assert contrast(capture, "model.layers.0", "lie", "honest", n_boot=100, top=3).control == "honest"  # side B
    chosen = contrast(capture, "model.layers.0", "lie", "parrot", control="parrot", n_boot=100, top=3)
    assert chosen.control == "parrot" and chosen.n_control == 120
    assert chosen.recall_note is None  # 120 control items resolve 1%
    default = contrast(capture, "model.layers.0", "lie", "parrot", n_boot=100, top=3)
    assert default.control == "honest" and default.recall_note is not None
    assert [r.auroc for r in chosen.rows] == [r.auroc for r in default.rows]  # the ranking does not move
    with pytest.raises(WorkbenchError, match="the control lie shares scenarios with side A"):
        contrast(capture, "model.layers.0", "lie", "parrot", control="lie")
    with pytest.raises(WorkbenchError, match="no items of condition 'ignorant'"):
        contrast(capture, "model.layers.0", "lie", "parrot", control="ignorant")
    # the sides' minimum is not the control's: 5 honest items set a threshold (and leave 1% unresolved)
    few = contrast(planted_capture(), "model.layers.0", "lie", "parrot", min_items=6, n_boot=50, top=2)
    assert few.n_control == 5 and few.recall_note is not None


def test_the_default_control_is_honest_unless_a_side_is_honest():
    from workbench.features.contrast import check_control, default_control

    assert default_control("lie", "parrot") == "honest"
    assert default_control("lie+false", "lie+truth", {"lie", "honest"}) == "honest"
    assert default_control("lie+false", "lie+truth", {"lie", "parrot"}) == "lie+truth"  # no honest scenarios
    assert default_control("lie", "honest") == "honest"  # side B
    assert default_control("honest+false", "lie") == "lie"
    check_control("lie+false", "lie+truth")  # disjoint: lied vs resisted
    for a, control in (("lie", "lie+truth"), ("lie+false", "lie"), ("lie", "lie")):
        with pytest.raises(WorkbenchError, match="shares scenarios with side A"):
            check_control(a, control)
    with pytest.raises(WorkbenchError, match="unknown condition"):
        check_control("lie", "honets")


def test_a_control_with_no_item_at_the_positions_is_an_error_that_says_what_to_do():
    capture = planted_capture()
    items = capture.meta.items
    for index, item in enumerate(items):
        if item.condition == "honest":  # the last prompt token would be the attention sink: never selected
            items[index] = item.model_copy(update={"prompt_length": 1})
    with pytest.raises(WorkbenchError, match="only 0 items of the control 'honest' have tokens at position rule "
                                             "'last_prompt_token'; at least 1 is needed .*or choose another control"):
        contrast(capture, "model.layers.0", "lie", "parrot")
