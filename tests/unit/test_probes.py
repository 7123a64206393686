"""The probe baseline's detection metrics on planted activations: balanced accuracy at the threshold set
on the train split, recall at 1% FPR on the default or a given control, each with n."""

from __future__ import annotations

import pytest
import torch

from workbench.core.errors import WorkbenchError
from workbench.core.stats import balanced_threshold, detection_metrics
from workbench.features.probes import ProbeResult, evaluate_probes, probe_scores


def planted(n: int = 20, d: int = 8, seed: int = 0):
    """``lie`` shifted along the first axis, ``honest`` and ``parrot`` around zero; train and held-out."""
    generator = torch.Generator().manual_seed(seed)
    acts, conditions, splits = [], [], []
    for split in ("train", "heldout"):
        for condition, shift in (("lie", 3.0), ("honest", 0.0), ("parrot", 0.5)):
            x = torch.randn(n, d, generator=generator)
            x[:, 0] += shift
            acts.append(x)
            conditions += [condition] * n
            splits += [split] * n
    return torch.cat(acts), conditions, splits


def test_probes_report_balanced_accuracy_at_the_train_threshold_and_recall_on_the_negatives():
    acts, conditions, splits = planted()
    results = evaluate_probes(acts, conditions, splits, site="s", n_boot=50)
    assert len(results) == 4
    for result in results:
        d = result.detection
        assert d.auroc == result.auroc and d.auroc.n == 40
        assert d.threshold_rule == "given" and d.balanced_accuracy.n == 40
        assert d.control == f"held-out {result.negative}" and d.n_control == 20 and d.recall_at_fpr.n == 20
        assert not d.resolved and "cannot be resolved with 20 control scores" in d.note  # 20 < 100
        assert d.balanced_accuracy.value > 0.8
    # the threshold is the one that maximises balanced accuracy on the train split, applied to held-out scores
    pick = lambda c, s: acts[[i for i, (ci, si) in enumerate(zip(conditions, splits)) if ci == c and si == s]]
    first = results[0]
    train = probe_scores(first.kind, pick("lie", "train"), pick("honest", "train"),
                         torch.cat([pick("lie", "train"), pick("honest", "train")]))[0]
    threshold = balanced_threshold(train[:20], train[20:])
    held = probe_scores(first.kind, pick("lie", "train"), pick("honest", "train"),
                        torch.cat([pick("lie", "heldout"), pick("honest", "heldout")]))[0]
    expected = detection_metrics(held[:20], held[20:], threshold=threshold, n_boot=50)
    assert first.detection.threshold == pytest.approx(threshold)
    assert first.detection.balanced_accuracy.value == pytest.approx(expected.balanced_accuracy.value)
    assert first.detection.recall_at_fpr.value == pytest.approx(expected.recall_at_fpr.value)


def test_probes_take_a_control_condition_or_a_benign_control_set():
    acts, conditions, splits = planted()
    by_condition = evaluate_probes(acts, conditions, splits, site="s", contrasts=[("lie", "parrot")],
                                   kinds=["difference_of_means"], control_condition="honest", n_boot=20)[0]
    assert by_condition.detection.control == "held-out honest" and by_condition.detection.n_control == 20
    benign = torch.randn(200, acts.shape[1], generator=torch.Generator().manual_seed(1))
    given = evaluate_probes(acts, conditions, splits, site="s", contrasts=[("lie", "parrot")],
                            kinds=["difference_of_means"], control_acts=benign, control_name="neutral questions",
                            n_boot=20)[0]
    d = given.detection
    assert d.control == "neutral questions" and d.n_control == 200 and d.resolved and d.note is None
    assert d.control_fpr <= 0.01 + 1 / 200
    with pytest.raises(WorkbenchError, match="not both"):
        evaluate_probes(acts, conditions, splits, site="s", control_condition="honest", control_acts=benign)
    with pytest.raises(WorkbenchError, match="control .held-out ignorant. has no items"):
        evaluate_probes(acts, conditions, splits, site="s", control_condition="ignorant")


def test_a_probe_result_without_detection_metrics_still_loads():
    old = {"kind": "difference_of_means", "site": "model.layers.15", "positive": "lie", "negative": "honest",
           "n_train_positive": 40, "n_train_negative": 40,
           "auroc": {"value": 0.99, "low": 0.98, "high": 1.0, "n": 96, "method": "bootstrap"},
           "n_heldout_positive": 48, "n_heldout_negative": 48}
    result = ProbeResult.model_validate(old)
    assert result.detection is None and result.model_dump(exclude_unset=True) == old
