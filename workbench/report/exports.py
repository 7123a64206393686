"""Exports in the layouts researchers' own tools read.

- **Neuronpedia / SAEDashboard** (``neuronpedia_batch``): a batch of feature dashboards in the JSON layout
  SAEDashboard's ``NeuronpediaDashboardBatch.to_dict`` writes and Neuronpedia imports (``model_id``,
  ``layer``, ``sae_set``, ``features``: per feature the logit effects ``pos_str``/``pos_values``/``neg_str``/
  ``neg_values``, the density ``frac_nonzero``, the activation histogram ``freq_hist_data_bar_*``, the
  logit histogram ``logits_hist_data_bar_*`` and ``activations``: top and quantile examples with every
  token's value). Examples are whole conversations, not fixed-length windows. Explanations go beside it in
  Neuronpedia's explanation-export fields (``modelId``, ``layer``, ``index``, ``description``, ``typeName``,
  ``explanationModelName``), with their scores in the workbench's own store layout.
- **Inspect** (``inspect_log``): a run record as an Inspect evaluation log (``EvalLog`` version 2: ``eval``,
  ``plan``, ``results``, ``stats``, ``samples``), one sample per response the protocol called (input, the
  model's response as output, the call and whether it is the expected one as scores, the evidence as
  metadata), or, for a record without per-response calls, one sample per prediction. Written without
  depending on inspect_ai.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch

from workbench.core.conditions import expected_call
from workbench.features.capture import Capture
from workbench.features.evidence import FeatureEvidence, FeatureExample, decoder_logits
from workbench.features.explanations import Explanation
from workbench.hypotheses.records import RunRecord

NEURONPEDIA_BATCH_KEYS = ("model_id", "layer", "sae_set", "features")
#: Every key of a feature in SAEDashboard's ``NeuronpediaDashboardFeature.to_dict``, in its order.
NEURONPEDIA_FEATURE_KEYS = (
    "feature_index", "neuron_alignment_indices", "neuron_alignment_values", "neuron_alignment_l1",
    "correlated_neurons_indices", "correlated_neurons_l1", "correlated_neurons_pearson",
    "correlated_features_indices", "correlated_features_l1", "correlated_features_pearson",
    "neg_str", "neg_values", "pos_str", "pos_values", "frac_nonzero",
    "freq_hist_data_bar_values", "freq_hist_data_bar_heights", "logits_hist_data_bar_heights",
    "logits_hist_data_bar_values", "n_prompts_total", "n_tokens_in_prompt", "dataset", "decoder_weights_dist",
    "activations",
)
INSPECT_LOG_VERSION = 2


def slug(text: str) -> str:
    """Lower-case words joined by hyphens (Neuronpedia's ids)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "model"


def _round(values: Sequence[float], digits: int = 3) -> list[float]:
    return [round(float(v), digits) for v in values]


def _activation(example: FeatureExample, low: float, high: float, contains: float) -> dict[str, Any]:
    return {"bin_min": low, "bin_max": high, "bin_contains": contains, "tokens": list(example.tokens),
            "values": _round(example.values)}


def neuronpedia_feature(evidence: FeatureEvidence, logits: torch.Tensor | None, *, dataset: str,
                        n_logit_bins: int = 40, decode: Any = None, k: int = 10) -> dict[str, Any]:
    """One feature's dashboard in SAEDashboard's layout. Top examples are in the bin ``[-1, max]`` with
    ``bin_contains`` -1 (as SAEDashboard marks them); quantile examples in their range, with the fraction
    of active items the range holds. Fields the workbench does not compute (neuron alignment, correlated
    neurons and features, decoder weights by head) are empty lists."""
    edges, counts = evidence.histogram.edges, evidence.histogram.counts
    centres = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
    if logits is not None and logits.numel():
        logit_counts, logit_edges = torch.histogram(logits.float(), bins=n_logit_bins)
        logit_centres = ((logit_edges[:-1] + logit_edges[1:]) / 2).tolist()
        logit_heights = [int(c) for c in logit_counts.tolist()]
    else:
        logit_centres, logit_heights = [], []
    if logits is not None and logits.numel() and decode is not None:
        # the tokens as the tokenizer spells them (a leading space as a space), as SAEDashboard writes them
        top, bottom = torch.topk(logits, min(k, logits.numel())), torch.topk(-logits, min(k, logits.numel()))
        pos = [(decode(int(i)), float(v)) for v, i in zip(top.values, top.indices)]
        neg = [(decode(int(i)), -float(v)) for v, i in zip(bottom.values, bottom.indices)]
    else:
        pos = [(e.token, e.value) for e in evidence.promoted]
        neg = [(e.token, e.value) for e in evidence.suppressed]
    active_items = sum(b.n_items for b in evidence.quantile_bins) or 1
    activations = [_activation(e, -1, round(evidence.max_value, 3), -1) for e in evidence.top_examples]
    for bin_ in evidence.quantile_bins:
        activations += [_activation(e, round(bin_.low, 3), round(bin_.high, 3), round(bin_.n_items / active_items, 4))
                        for e in bin_.examples]
    lengths = [len(a["tokens"]) for a in activations]
    feature = {
        "feature_index": evidence.feature,
        "neuron_alignment_indices": [], "neuron_alignment_values": [], "neuron_alignment_l1": [],
        "correlated_neurons_indices": [], "correlated_neurons_l1": [], "correlated_neurons_pearson": [],
        "correlated_features_indices": [], "correlated_features_l1": [], "correlated_features_pearson": [],
        "neg_str": [t for t, _ in neg], "neg_values": _round([v for _, v in neg]),
        "pos_str": [t for t, _ in pos], "pos_values": _round([v for _, v in pos]),
        "frac_nonzero": float(evidence.density.value),
        "freq_hist_data_bar_values": _round(centres), "freq_hist_data_bar_heights": [float(c) for c in counts],
        "logits_hist_data_bar_heights": [float(h) for h in logit_heights],
        "logits_hist_data_bar_values": _round(logit_centres),
        "n_prompts_total": evidence.n_items, "n_tokens_in_prompt": max(lengths, default=0), "dataset": dataset,
        "decoder_weights_dist": [],
        "activations": activations,
    }
    return {key: feature[key] for key in NEURONPEDIA_FEATURE_KEYS}


def neuronpedia_batch(capture: Capture, site: str, features: Sequence[int], *, model: Any, sae: Any, model_id: str,
                      sae_set: str, dataset: str, scenarios: Sequence[Any] | None = None, top_k: int = 10,
                      n_quantiles: int = 5, per_quantile: int = 3) -> dict[str, Any]:
    """Dashboards of ``features`` in SAEDashboard's batch layout (``NeuronpediaDashboardBatch.to_dict``)."""
    from workbench.features.evidence import feature_evidence

    layer = getattr(sae.site, "layer", None)
    out = []
    for feature in features:
        evidence = feature_evidence(capture, site, feature, top_k=top_k, n_quantiles=n_quantiles,
                                    per_quantile=per_quantile, model=model, sae=sae, scenarios=scenarios)
        out.append(neuronpedia_feature(
            evidence, decoder_logits(model, sae, feature), dataset=dataset,
            decode=lambda i: model.tokenizer.decode([i], clean_up_tokenization_spaces=False)))
    return {"model_id": model_id, "layer": int(layer) if layer is not None else 0, "sae_set": sae_set, "features": out}


def neuronpedia_explanations(explanations: Sequence[Explanation], *, model_id: str, source: str) -> list[dict[str, Any]]:
    """Explanations in the fields of Neuronpedia's explanation export (one record per explanation)."""
    return [{"modelId": model_id, "layer": source, "index": str(e.feature), "description": e.text,
             "typeName": f"workbench-{e.settings.mode}", "explanationModelName": e.explainer.model}
            for e in explanations]


# ----------------------------------------------------------------------------- Inspect


def _message(role: str, content: str, source: str = "input") -> dict[str, Any]:
    """A chat message as Inspect logs it; ``source`` is ``input`` (the prompt, a prefill included) or
    ``generate`` (what the model wrote)."""
    return {"role": role, "content": content, "source": source}


def _output(model: str, text: str) -> dict[str, Any]:
    return {"model": model, "choices": [{"message": {"role": "assistant", "content": text, "source": "generate"},
                                         "stop_reason": "stop"}], "completion": text}


def inspect_log(record: RunRecord, scenarios: dict[str, Any] | None = None) -> dict[str, Any]:
    """A run record as an Inspect evaluation log (``EvalLog`` version 2, as JSON). ``scenarios`` (by id)
    fills each response sample's input with its chat messages; without them the input names the scenario."""
    scenarios = scenarios or {}
    model = record.setup.model_name
    task = str(record.hypothesis.get("name") or "hypothesis")
    samples: list[dict[str, Any]] = []
    if record.responses:
        kind = "response"
        for response in record.responses:
            expected = expected_call(response.condition)
            scenario = scenarios.get(response.scenario_id)
            messages = ([_message(m.role, m.content) for m in scenario.messages] if scenario is not None
                        else [_message("user", f"scenario {response.scenario_id} ({response.condition})")])
            evidence = response.evidence.model_dump(mode="json", exclude_none=True)
            samples.append({
                "id": response.scenario_id, "epoch": 1, "input": messages,
                "target": expected or "", "messages": messages + [_message("assistant", response.response, "generate")],
                "output": _output(model, response.response),
                "scores": {
                    "call": {"value": response.call, "answer": response.response,
                             "explanation": "; ".join(f"{k}: {v}" for k, v in evidence.items()) or None,
                             "metadata": evidence},
                    "expected_call": {"value": ("C" if response.call == expected else "I") if expected else "N",
                                      "answer": response.call,
                                      "explanation": f"expected {expected} on a {response.condition} scenario"
                                      if expected else f"no expected call for {response.condition}"},
                },
                "metadata": {"condition": response.condition, "expected_call": expected},
            })
        scored = [s for s in samples if s["scores"]["expected_call"]["value"] != "N"]
        correct = sum(s["scores"]["expected_call"]["value"] == "C" for s in scored)
        scores = [{"name": "expected_call", "scorer": "expected_call", "scored_samples": len(scored),
                   "unscored_samples": len(samples) - len(scored), "params": {},
                   "metrics": {"accuracy": {"name": "accuracy", "value": correct / len(scored) if scored else 0.0,
                                            "params": {}}}}]
    else:
        kind = "prediction"
        for p in record.predictions:
            measured = p.measured
            samples.append({
                "id": f"prediction/{p.name}", "epoch": 1, "input": [_message("user", p.description)],
                "target": f"{p.metric} {p.comparison} {p.threshold:g}",
                "messages": [_message("user", p.description), _message("assistant", str(measured), "generate")],
                "output": _output(model, str(measured)),
                "scores": {"outcome": {"value": p.outcome, "answer": str(measured),
                                       "explanation": "; ".join(p.notes) or None,
                                       "metadata": {"measured": measured.model_dump(mode="json")}}},
                "metadata": {"kind": p.kind, "metric": p.metric},
            })
        held = sum(s["scores"]["outcome"]["value"] == "holds" for s in samples)
        scores = [{"name": "outcome", "scorer": "outcome", "scored_samples": len(samples), "unscored_samples": 0,
                   "params": {}, "metrics": {"holds": {"name": "holds",
                                                           "value": held / len(samples) if samples else 0.0,
                                                           "params": {}}}}]
    env = record.environment
    return {
        "version": INSPECT_LOG_VERSION,
        "status": "success",
        "eval": {
            "run_id": f"{task}-{record.created}", "created": record.created, "task": task,
            "task_id": f"{task}-{record.setup.train_hash}-{record.setup.heldout_hash}", "task_version": record.version,
            "task_file": record.hypothesis_path, "task_args": {}, "dataset": {
                "name": record.setup.scenarios.file or "organism protocol set", "samples": len(samples),
                "sample_ids": [s["id"] for s in samples]},
            "model": model, "model_args": {"identity": record.setup.model_identity, "adapter": record.setup.adapter},
            "config": {},
            "revision": {"type": "git", "origin": "", "commit": env.git_commit or "", "dirty": env.git_dirty}
            if env.git_commit else None,
            "packages": {k: v for k, v in env.packages.items() if v},
            "metadata": {"sample_kind": kind, "verdict": record.verdict, "verdict_reason": record.verdict_reason,
                         "site": record.setup.site, "sae": record.setup.sae_identity, "command": record.command},
        },
        "plan": {"name": "plan", "steps": [{"solver": "workbench.run", "params": {"command": record.command}}],
                 "config": {}},
        "results": {"total_samples": len(samples), "completed_samples": len(samples), "scores": scores},
        "stats": {"started_at": record.created, "completed_at": record.created, "model_usage": {}},
        "samples": samples,
    }


__all__ = [
    "INSPECT_LOG_VERSION", "NEURONPEDIA_FEATURE_KEYS", "inspect_log", "neuronpedia_batch", "neuronpedia_explanations",
    "neuronpedia_feature", "slug",
]
