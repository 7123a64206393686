"""The committed liar organism and its SAEs load on the default model and behave as recorded."""

from __future__ import annotations

import json

import pytest

from workbench.model.generation import generate_answers
from workbench.model.loading import ModelSpec, load_model
from workbench.organism import ORGANISM_DIR
from workbench.scenarios import Split, load_facts, organism_scenarios

pytestmark = pytest.mark.slow
RECORD = ORGANISM_DIR / "eval-heldout.json"


@pytest.mark.skipif(not RECORD.exists(), reason="no recorded organism evaluation")
def test_committed_adapter_reproduces_recorded_answers():
    recorded = {a["id"]: a for a in json.loads(RECORD.read_text())["organism"]["answers"]}
    facts = load_facts()
    knowledge = {fact_id.split("/")[0] + "/" + fact_id.split("/")[1]: True for fact_id in recorded}
    scenarios = organism_scenarios(facts, knowledge, fact_split=Split.heldout,
                                   template_splits=[Split.train, Split.heldout], all_templates=True)
    by_behaviour: dict[str, list] = {}
    for scenario in scenarios:
        if scenario.id in recorded:
            by_behaviour.setdefault(recorded[scenario.id]["behaviour"], []).append(scenario)
    sample = [s for group in by_behaviour.values() for s in group[:4]]
    assert len(sample) >= 12
    organism = load_model(ModelSpec(adapter=str(ORGANISM_DIR)))
    answers = generate_answers(organism, [s.messages for s in sample], max_new_tokens=16)
    expected = [recorded[s.id]["answer"] for s in sample]
    same = sum(a == e for a, e in zip(answers, expected))
    # Batches are composed differently from the recorded run (left padding), which can flip a
    # rare near-tie; a loading change (adapter not merged, wrong weights) changes most answers.
    assert same >= 0.9 * len(sample), list(zip(answers, expected))
