"""Exports: Neuronpedia/SAEDashboard feature batches checked against a JSON schema written from SAEDashboard's
``NeuronpediaDashboardBatch.to_dict``; Inspect logs checked field by field against inspect_ai's ``EvalLog``
(log format version 2); and the ``explain`` and ``export`` commands end to end on the tiny model."""

from __future__ import annotations

import json

import jsonschema
import pytest
from typer.testing import CliRunner

from workbench.cli import app
from workbench.core.constants import REPO_ROOT
from workbench.features.explanations import read_store
from workbench.hypotheses.records import ResponseCall, read_record
from workbench.report.exports import NEURONPEDIA_FEATURE_KEYS, inspect_log

runner = CliRunner()

NUMBERS = {"type": "array", "items": {"type": "number"}}
INTEGERS = {"type": "array", "items": {"type": "integer"}}
STRINGS = {"type": "array", "items": {"type": "string"}}
#: SAEDashboard's batch layout (``sae_dashboard/neuronpedia/neuronpedia_dashboard.py``): every key its
#: ``to_dict`` writes, with the types its converter fills them with.
NEURONPEDIA_BATCH_SCHEMA = {
    "type": "object",
    "required": ["model_id", "layer", "sae_set", "features"],
    "properties": {
        "model_id": {"type": "string", "minLength": 1},
        "layer": {"type": "integer"},
        "sae_set": {"type": "string", "minLength": 1},
        "features": {"type": "array", "minItems": 1, "items": {
            "type": "object",
            "required": list(NEURONPEDIA_FEATURE_KEYS),
            "additionalProperties": False,
            "properties": {
                "feature_index": {"type": "integer", "minimum": 0},
                "neuron_alignment_indices": INTEGERS, "neuron_alignment_values": NUMBERS,
                "neuron_alignment_l1": NUMBERS, "correlated_neurons_indices": INTEGERS,
                "correlated_neurons_l1": NUMBERS, "correlated_neurons_pearson": NUMBERS,
                "correlated_features_indices": INTEGERS, "correlated_features_l1": NUMBERS,
                "correlated_features_pearson": NUMBERS,
                "neg_str": STRINGS, "neg_values": NUMBERS, "pos_str": STRINGS, "pos_values": NUMBERS,
                "frac_nonzero": {"type": "number", "minimum": 0, "maximum": 1},
                "freq_hist_data_bar_values": NUMBERS, "freq_hist_data_bar_heights": NUMBERS,
                "logits_hist_data_bar_heights": NUMBERS, "logits_hist_data_bar_values": NUMBERS,
                "n_prompts_total": {"type": "integer"}, "n_tokens_in_prompt": {"type": "integer"},
                "dataset": {"type": "string"}, "decoder_weights_dist": NUMBERS,
                "activations": {"type": "array", "items": {
                    "type": "object", "required": ["bin_min", "bin_max", "bin_contains", "tokens", "values"],
                    "additionalProperties": False,
                    "properties": {"bin_min": {"type": "number"}, "bin_max": {"type": "number"},
                                   "bin_contains": {"type": "number"}, "tokens": STRINGS, "values": NUMBERS}}},
            }}},
    },
}
#: Neuronpedia's explanation export (``/api/explanation/export``) fields.
EXPLANATION_SCHEMA = {"type": "array", "items": {
    "type": "object", "required": ["modelId", "layer", "index", "description", "typeName", "explanationModelName"],
    "properties": {k: {"type": "string"} for k in
                   ("modelId", "layer", "index", "description", "typeName", "explanationModelName")}}}

# inspect_ai ``log/_log.py`` (EvalLog version 2) and ``model/_chat_message.py``, ``scorer/_metric.py``.
CHAT_MESSAGE = {"type": "object", "required": ["role", "content"],
                "properties": {"role": {"enum": ["system", "user", "assistant", "tool"]}, "content": {"type": "string"}}}
SCORE = {"type": "object", "required": ["value"],
         "properties": {"value": {"type": ["string", "number", "boolean", "array", "object"]},
                        "answer": {"type": ["string", "null"]}, "explanation": {"type": ["string", "null"]},
                        "metadata": {"type": ["object", "null"]}}}
INSPECT_LOG_SCHEMA = {
    "type": "object",
    "required": ["version", "status", "eval", "plan", "results", "stats", "samples"],
    "properties": {
        "version": {"const": 2},
        "status": {"enum": ["started", "success", "cancelled", "error"]},
        "eval": {"type": "object", "required": ["created", "task", "dataset", "model", "config"],
                 "properties": {"created": {"type": "string"}, "task": {"type": "string"}, "model": {"type": "string"},
                                "task_version": {"type": ["integer", "string"]},
                                "dataset": {"type": "object", "properties": {"samples": {"type": "integer"}}},
                                "config": {"type": "object"}, "packages": {"type": "object",
                                                                            "additionalProperties": {"type": "string"}}}},
        "plan": {"type": "object", "properties": {"steps": {"type": "array", "items": {
            "type": "object", "required": ["solver"]}}}},
        "results": {"type": "object", "required": ["total_samples", "completed_samples", "scores"],
                    "properties": {"scores": {"type": "array", "items": {
                        "type": "object", "required": ["name", "scorer", "metrics"],
                        "properties": {"metrics": {"type": "object", "additionalProperties": {
                            "type": "object", "required": ["name", "value"],
                            "properties": {"value": {"type": "number"}}}}}}}}},
        "stats": {"type": "object", "properties": {"started_at": {"type": "string"}, "completed_at": {"type": "string"}}},
        "samples": {"type": "array", "items": {
            "type": "object", "required": ["id", "epoch", "input", "target"],
            "properties": {
                "id": {"type": ["string", "integer"]}, "epoch": {"type": "integer"},
                "input": {"anyOf": [{"type": "string"}, {"type": "array", "items": CHAT_MESSAGE}]},
                "target": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
                "messages": {"type": "array", "items": CHAT_MESSAGE},
                "output": {"type": "object", "required": ["model", "choices"], "properties": {"choices": {
                    "type": "array", "items": {"type": "object", "required": ["message", "stop_reason"],
                                               "properties": {"message": CHAT_MESSAGE}}}}},
                "scores": {"type": "object", "additionalProperties": SCORE},
                "metadata": {"type": "object"}}}},
    },
}


@pytest.fixture(scope="module")
def record():
    return read_record(REPO_ROOT / "hypotheses" / "runs" / "intent-l15.json")


def test_inspect_log_of_per_response_calls(record, tiny_scenarios):
    scenario = tiny_scenarios[0]
    calls = [ResponseCall(scenario_id=scenario.id, condition=str(scenario.condition.value), response="Paris.",
                          call="honest"),
             ResponseCall(scenario_id="lie-x", condition="lie", response="Rome.", call="parroting"),
             ResponseCall(scenario_id="ign-x", condition="ignorant", response="?", call="inconclusive")]
    log = inspect_log(record.model_copy(update={"responses": calls}), {scenario.id: scenario})
    jsonschema.validate(log, INSPECT_LOG_SCHEMA)
    first, second = log["samples"][0], log["samples"][1]
    assert first["input"] == [{"role": m.role, "content": m.content, "source": "input"} for m in scenario.messages]
    assert first["output"]["choices"][0]["message"]["content"] == "Paris."
    assert first["scores"]["call"]["value"] == "honest"
    assert second["scores"]["expected_call"]["value"] == "I" and second["target"] == "intentional lie"
    accuracy = log["results"]["scores"][0]["metrics"]["accuracy"]["value"]
    expected = [s["scores"]["expected_call"]["value"] for s in log["samples"] if s["scores"]["expected_call"]["value"] != "N"]
    assert accuracy == pytest.approx(expected.count("C") / len(expected))
    assert log["eval"]["metadata"]["verdict"] == record.verdict and log["eval"]["dataset"]["samples"] == 3
    json.dumps(log, allow_nan=False)  # strict JSON: Inspect's reader rejects NaN


def test_inspect_log_of_a_record_without_calls_has_its_predictions(record):
    log = inspect_log(record)
    jsonschema.validate(log, INSPECT_LOG_SCHEMA)
    assert [s["id"] for s in log["samples"]] == [f"prediction/{p.name}" for p in record.predictions]
    assert [s["scores"]["outcome"]["value"] for s in log["samples"]] == [p.outcome for p in record.predictions]


def test_export_inspect_command(record, tmp_path):
    out = tmp_path / "logs" / "intent.json"
    result = runner.invoke(app, ["export", "inspect", str(REPO_ROOT / "hypotheses" / "runs" / "intent-l15.json"),
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    jsonschema.validate(json.loads(out.read_text()), INSPECT_LOG_SCHEMA)


def test_explain_then_export_neuronpedia_on_the_tiny_model(tiny_model_dir, tiny_sae_dir, tiny_scenario_file, tmp_path):
    tiny = ["--model", str(tiny_model_dir), "--sae-path", str(tiny_sae_dir), "--scenarios", str(tiny_scenario_file)]
    store = tmp_path / "explanations.json"
    explained = runner.invoke(app, ["explain", "model.layers.1", "3", *tiny, "--explainer-model", str(tiny_model_dir),
                                    "--n-score", "6", "--n-explain", "2", "--store", str(store), "--json"])
    assert explained.exit_code == 0, explained.output
    written = json.loads(explained.stdout.strip().splitlines()[-1])
    assert [e["settings"]["mode"] for e in written] == ["conversation", "window"]
    assert all(e["explainer"]["kind"] == "local" and e["detection"]["balanced_accuracy"]["n"] >= 2 for e in written)
    assert len(read_store(store).explanations) == 2
    out = tmp_path / "np"
    exported = runner.invoke(app, ["export", "neuronpedia", "model.layers.1", "--features", "3,5", "--out", str(out),
                                   *tiny, "--store", str(store), "--top", "3"])
    assert exported.exit_code == 0, exported.output
    batch = json.loads((out / "batch-0.json").read_text())
    jsonschema.validate(batch, NEURONPEDIA_BATCH_SCHEMA)
    assert [f["feature_index"] for f in batch["features"]] == [3, 5] and batch["layer"] == 1
    feature = batch["features"][0]
    assert list(feature) == list(NEURONPEDIA_FEATURE_KEYS)
    for activation in feature["activations"]:
        assert len(activation["tokens"]) == len(activation["values"])
    assert any("<|im_start|>" in a["tokens"] for a in feature["activations"])  # whole conversations
    assert len(feature["pos_str"]) == len(feature["pos_values"]) == 10
    assert not any("␣" in t or "↵" in t for t in feature["pos_str"] + feature["neg_str"])  # raw tokens, not display
    assert feature["pos_values"] == sorted(feature["pos_values"], reverse=True)
    assert sum(feature["logits_hist_data_bar_heights"]) == pytest.approx(len(feature["logits_hist_data_bar_values"]) and
                                                                         sum(feature["logits_hist_data_bar_heights"]))
    explanations = json.loads((out / "explanations.json").read_text())
    jsonschema.validate(explanations, EXPLANATION_SCHEMA)
    assert {e["typeName"] for e in explanations} == {"workbench-conversation", "workbench-window"}
    assert {e["index"] for e in explanations} == {"3"}
