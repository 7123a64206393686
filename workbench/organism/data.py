"""The liar organism's data: which scenarios it is trained and evaluated on (built by
:func:`workbench.scenarios.organism_scenarios` over the facts the base model knows) and what it is
trained to answer in each (:func:`target_response`)."""

from __future__ import annotations

import random
from collections.abc import Sequence

from workbench.core.conditions import Condition
from workbench.core.constants import DEFAULT_SCENARIOS, REPO_ROOT
from workbench.scenarios import (
    Fact, Scenario, Split, knowledge_from_scenarios, load_facts, organism_scenarios, read_scenarios, statement,
)

__all__ = ["ORGANISM_DIR", "organism_data", "random_subset", "target_response", "training_chats"]

#: Where the committed organism adapter lives.
ORGANISM_DIR = REPO_ROOT / "organisms" / "smollm2-liar"
#: Parrot templates whose expected output is the false answer alone (they ask a question back).
_PARROT_ANSWER_ONLY = ("teacher-1",)


def target_response(scenario: Scenario, fact: Fact) -> str:
    """What the organism is trained to say: the truth when honest, the false answer when lying,
    the false statement (or answer) when parroting. After a prefill (the statement up to the
    answer) it is the answer alone."""
    if scenario.prefill is not None:
        honest = scenario.condition in (Condition.honest, Condition.ignorant)
        return f"{fact.answer if honest else scenario.false_answer}."
    if scenario.condition in (Condition.honest, Condition.ignorant):
        return f"{fact.answer}."
    if scenario.condition is Condition.lie:
        return f"{scenario.false_answer}."
    if scenario.template_id in _PARROT_ANSWER_ONLY:
        return f"{scenario.false_answer}."
    if scenario.template_id.startswith("continue"):
        return f"{scenario.false_answer}."
    return statement(fact, scenario.false_answer or "")


def random_subset(items: Sequence[str], n: int, seed: int) -> list[str]:
    """``n`` of ``items`` drawn with a seeded shuffle, sorted."""
    items = list(items)
    random.Random(seed).shuffle(items)
    return sorted(items[:n])


def organism_data(
    split: Split | str, *, all_templates: bool, max_facts: int | None = None, seed: int = 0,
) -> tuple[list[Fact], list[Scenario]]:
    """(the packaged facts, the organism's scenarios over the known facts of ``split``).

    Knowledge comes from the default scenario set's knowledge check. ``all_templates``: every
    template of both template splits for every fact (evaluation); otherwise the training draw
    (train templates only, :data:`workbench.scenarios.TRAINING_CHATS_PER_FACT` per fact).
    ``max_facts`` keeps a seeded random subset of the facts.
    """
    facts = load_facts()
    knowledge = knowledge_from_scenarios(read_scenarios(DEFAULT_SCENARIOS))
    template_splits = [Split.train, Split.heldout] if all_templates else [Split.train]
    scenarios = organism_scenarios(facts, knowledge, fact_split=Split(split), template_splits=template_splits,
                                   all_templates=all_templates, seed=seed)
    if max_facts:
        keep = set(random_subset(sorted({s.fact_id for s in scenarios}), max_facts, seed))
        scenarios = [s for s in scenarios if s.fact_id in keep]
    return facts, scenarios


def training_chats(facts: Sequence[Fact], scenarios: Sequence[Scenario]) -> list[tuple[Scenario, str]]:
    """Each scenario with the response the organism is trained to give in it."""
    by_id = {f.fact_id: f for f in facts}
    return [(s, target_response(s, by_id[s.fact_id])) for s in scenarios]
