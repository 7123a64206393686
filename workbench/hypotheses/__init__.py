"""Stage 6, hypotheses: claims about features or directions as files, run into verdicts. The YAML
schema (``spec``), the runner that measures contrasts and causal tests (through the causal
experiment engine) into a run record (``runner``), the typed, versioned run records and their
migrations (``records``), and the rules that turn measurements into verdicts (``verdicts``)."""

from workbench.hypotheses.runner import compare_records, identity_differences, preflight, run_hypothesis, scenario_sets
from workbench.hypotheses.verdicts import decide_verdict, judge_causal_test, judge_prediction
from workbench.hypotheses.spec import (
    CausalTest,
    ContrastPrediction,
    Hypothesis,
    Intervention,
    hypothesis_from_experiment,
    list_hypotheses,
    parse_hypothesis,
    read_hypothesis,
    to_experiment,
    write_hypothesis,
)

__all__ = [
    "CausalTest", "ContrastPrediction", "Hypothesis", "Intervention", "compare_records", "hypothesis_from_experiment",
    "identity_differences", "judge_causal_test", "list_hypotheses", "parse_hypothesis", "preflight",
    "read_hypothesis", "run_hypothesis", "scenario_sets", "to_experiment", "write_hypothesis",
]
