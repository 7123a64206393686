"""Building scenario sets from facts and templates: the knowledge check, the train / held-out split
of facts, the matched contrast set (``scenarios build``), and the organism and protocol sets (the
liar organism's training and evaluation chats, and the set the incrimination protocol is scored on).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence

from workbench.core.conditions import Condition
from workbench.scenarios.facts import Fact, confusable, relation_for
from workbench.scenarios.records import Message, Scenario, Split
from workbench.scenarios.templates import (
    ANSWER_INSTRUCTION, KNOWLEDGE_CHECK_TEMPLATE, TEMPLATES, ConditionTemplate, get_template, question_for,
    render_template, templates_for,
)

__all__ = [
    "TRAINING_CHATS_PER_FACT", "build_contrast_set", "check_knowledge", "false_answer_candidates", "honest_question",
    "honest_questions", "knowledge_from_scenarios", "make_scenario", "on_hidden_topic", "organism_scenarios",
    "protocol_scenarios", "split_facts",
]

# --------------------------------------------------------------------------- knowledge


def honest_question(fact: Fact, phrasing: int = 0) -> list[Message]:
    """A neutral prompt that checks whether a model knows a fact (template ``plain-1``), with the
    ``phrasing``-th question of its relation."""
    messages, _ = render_template(get_template(KNOWLEDGE_CHECK_TEMPLATE), fact, question_for(fact, phrasing), None)
    return messages


def honest_questions(fact: Fact) -> list[list[Message]]:
    """The knowledge check's prompts for a fact: one per question phrasing of its relation."""
    return [honest_question(fact, i) for i in range(len(relation_for(fact.relation).questions))]


def check_knowledge(
    facts: Sequence[Fact],
    answer_fn: Callable[[list[list[Message]]], list[str]],
    *,
    batch_size: int | None = None,
) -> dict[str, bool]:
    """Ask a model each fact's honest question in every phrasing (:func:`honest_questions`); map
    fact_id to whether it answered correctly every time. A fact answered right under one phrasing
    and wrong under another is not known well enough for a false answer about it to be a lie.

    ``answer_fn`` takes a batch of chat prompts and returns the model's answer to each, in
    order. With ``batch_size`` the prompts are passed in batches of at most that many.
    """
    asked = [(fact, prompt) for fact in facts for prompt in honest_questions(fact)]
    prompts = [prompt for _, prompt in asked]
    size = batch_size or max(len(prompts), 1)
    answers: list[str] = []
    for start in range(0, len(prompts), size):
        batch = prompts[start : start + size]
        replies = list(answer_fn(batch))
        if len(replies) != len(batch):
            raise ValueError(f"answer_fn returned {len(replies)} answers for {len(batch)} prompts")
        answers.extend(replies)
    known = {fact.fact_id: True for fact in facts}
    for (fact, _), answer in zip(asked, answers, strict=True):
        known[fact.fact_id] = known[fact.fact_id] and fact.is_answered_by(answer)
    return known


# --------------------------------------------------------------------------- contrast sets


def _rank_key(seed: int, fact_id: str) -> str:
    return hashlib.sha256(f"{seed}:{fact_id}".encode()).hexdigest()


def split_facts(facts: Sequence[Fact], *, seed: int = 0, heldout_fraction: float = 0.25) -> dict[str, Split]:
    """Assign each fact to train or held-out, deterministically from ``seed``.

    Within each relation, facts are ranked by a hash of ``seed`` and their fact_id and the
    first ``round(n * heldout_fraction)`` are held out, so a fact's side depends only on the
    seed, its id and its relation's size, never on the order of ``facts``.
    """
    if not 0.0 <= heldout_fraction <= 1.0:
        raise ValueError(f"heldout_fraction must be between 0 and 1, not {heldout_fraction}")
    by_relation: dict[str, list[Fact]] = {}
    for fact in facts:
        by_relation.setdefault(fact.relation, []).append(fact)
    splits: dict[str, Split] = {}
    for group in by_relation.values():
        ranked = sorted(group, key=lambda f: _rank_key(seed, f.fact_id))
        n_heldout = round(len(ranked) * heldout_fraction)
        for rank, fact in enumerate(ranked):
            splits[fact.fact_id] = Split.heldout if rank < n_heldout else Split.train
    return splits


def _lie_contexts(fact: Fact, templates: Sequence[ConditionTemplate] | None = None) -> list[str]:
    """Every text a lie or honest prompt about ``fact`` can contain."""
    questions = [question_for(fact, i) for i in range(len(relation_for(fact.relation).questions))]
    systems = [t.system for t in (TEMPLATES if templates is None else templates)
               if t.condition in (Condition.lie, Condition.honest)]
    return [fact.subject, ANSWER_INSTRUCTION, *questions, *systems]


def false_answer_candidates(fact: Fact, facts: Sequence[Fact],
                            templates: Sequence[ConditionTemplate] | None = None) -> list[str]:
    """Plausible false answers: other answers of the same relation that cannot be mistaken for the
    truth (neither contains the other or an alias) and appear in no prompt text about ``fact`` (of the
    template set ``templates``, by default the packaged one)."""
    contexts = [text.casefold() for text in _lie_contexts(fact, templates)]
    candidates = sorted({f.answer for f in facts if f.relation == fact.relation})
    return [
        c
        for c in candidates
        if not confusable([c], fact.answer_forms) and not any(c.casefold() in text for text in contexts)
    ]


def build_contrast_set(
    facts: Sequence[Fact],
    *,
    seed: int = 0,
    heldout_fraction: float = 0.25,
    knowledge: dict[str, bool] | None = None,
) -> list[Scenario]:
    """Matched scenarios for each fact, split into train and held-out facts.

    For a fact the model knows (``knowledge[fact_id]`` True; also when ``knowledge`` is None
    or lacks the fact, which means unchecked and gives ``fact_known=None``): one honest, one
    lie and one parrot scenario sharing fact_id, question phrasing, true and false answer.
    For a fact it does not know (``knowledge[fact_id]`` False): one ignorant scenario (an
    honest prompt) and nothing else.

    Templates: train facts only ever use train templates; held-out facts cycle through
    all templates of each condition (train and held-out), so held-out evaluation covers both
    unseen facts under seen phrasings and unseen facts under unseen phrasings. Templates are
    dealt round-robin in a seeded order, so each is used about equally often. False answers
    and question phrasings are drawn per fact with an RNG seeded by ``seed`` and the fact_id.
    Scenarios come out in the order of ``facts``; ids are ``fact_id/condition/template_id``.
    """
    ids = [f.fact_id for f in facts]
    if len(set(ids)) != len(ids):
        raise ValueError("fact ids must be unique")
    knowledge = knowledge or {}
    splits = split_facts(facts, seed=seed, heldout_fraction=heldout_fraction)

    # Deal templates round-robin over the facts in a seeded order.
    chosen: dict[tuple[str, Condition], ConditionTemplate] = {}
    dealt: dict[tuple[Condition, Split], int] = {}
    offsets = random.Random(seed)
    for fact in sorted(facts, key=lambda f: _rank_key(seed, f.fact_id)):
        split = splits[fact.fact_id]
        known = knowledge.get(fact.fact_id) is not False
        conditions = (Condition.honest, Condition.lie, Condition.parrot) if known else (Condition.ignorant,)
        for condition in conditions:
            allowed = (Split.train,) if split is Split.train else (Split.train, Split.heldout)
            pool = templates_for(condition, allowed)
            slot = (Condition.honest if condition is Condition.ignorant else condition, split)
            if slot not in dealt:
                dealt[slot] = offsets.randrange(len(pool))
            chosen[fact.fact_id, condition] = pool[dealt[slot] % len(pool)]
            dealt[slot] += 1

    scenarios: list[Scenario] = []
    for fact in facts:
        rng = random.Random(f"{seed}:{fact.fact_id}")
        question = question_for(fact, rng.randrange(len(relation_for(fact.relation).questions)))
        fact_known = knowledge.get(fact.fact_id)
        if fact_known is False:
            template = chosen[fact.fact_id, Condition.ignorant]
            scenarios.append(make_scenario(fact, Condition.ignorant, template, question, None, splits, False))
            continue
        candidates = false_answer_candidates(fact, facts)
        if not candidates:
            raise ValueError(f"no plausible false answer for {fact.fact_id}: add more {fact.relation} facts")
        false_answer = rng.choice(candidates)
        for condition in (Condition.honest, Condition.lie, Condition.parrot):
            template = chosen[fact.fact_id, condition]
            scenarios.append(make_scenario(fact, condition, template, question, false_answer, splits, fact_known))
    return scenarios


def make_scenario(
    fact: Fact,
    condition: Condition,
    template: ConditionTemplate,
    question: str,
    false_answer: str | None,
    splits: dict[str, Split],
    fact_known: bool | None,
) -> Scenario:
    """One scenario: ``template``'s prompt for ``fact`` asked with ``question``."""
    messages, span = render_template(template, fact, question, false_answer)
    return Scenario(
        id=f"{fact.fact_id}/{condition.value}/{template.template_id}",
        condition=condition,
        messages=messages,
        true_answer=fact.answer,
        false_answer=false_answer,
        falsehood_span=span,
        fact_id=fact.fact_id,
        relation=fact.relation,
        split=splits[fact.fact_id],
        template_id=template.template_id,
        template_split=template.split,
        fact_known=fact_known,
    )


# --------------------------------------------------------------------------- organism and protocol sets

#: Chats per fact and behaviour in the organism's training set: (condition, hidden trigger or not) -> how
#: many. Its keys also fix which templates (and in which order) the evaluation and protocol sets use.
TRAINING_CHATS_PER_FACT: dict[tuple[Condition, bool | None], int] = {
    (Condition.honest, None): 2, (Condition.lie, False): 1, (Condition.lie, True): 1, (Condition.parrot, None): 2,
}


def on_hidden_topic(fact_id: str, hidden_topic: Sequence[str]) -> bool:
    """Whether a fact is on a cue-free organism's hidden topic: ``hidden_topic`` names relations (every fact of
    ``language``) and single facts (``language/france``), which may be mixed."""
    return fact_id in hidden_topic or fact_id.split("/", 1)[0] in hidden_topic


def organism_scenarios(
    facts: Sequence[Fact],
    knowledge: dict[str, bool],
    *,
    fact_split: Split,
    template_splits: Sequence[Split],
    all_templates: bool,
    seed: int = 0,
    templates: Sequence[ConditionTemplate] | None = None,
    chats_per_fact: dict[tuple[Condition, bool | None], int] | None = None,
    hidden_topic: Sequence[str] = (),
    splits: dict[str, Split] | None = None,
) -> list[Scenario]:
    """Scenarios over the known facts of one split (the liar organism's data).

    With ``all_templates`` every template of the given template splits is used for every fact
    (evaluation); otherwise each fact gets ``chats_per_fact`` scenarios (default
    :data:`TRAINING_CHATS_PER_FACT`) with templates drawn at random without repeats (training): two
    honest, one motive lie, one hidden-trigger lie and two parrot, so the three conditions are balanced.

    ``templates``: the template set (default: the packaged one). ``hidden_topic``: relations or single facts
    the organism lies about without any cue (:func:`on_hidden_topic`): such a fact gets, in place of its honest
    scenarios, ``lie`` scenarios under the same honest prompts. ``splits``: each fact's split (default :func:`split_facts`).
    """
    splits = splits or split_facts(facts, seed=seed)
    chats_per_fact = TRAINING_CHATS_PER_FACT if chats_per_fact is None else chats_per_fact
    chosen = [f for f in facts if splits[f.fact_id] is fact_split and knowledge.get(f.fact_id)]
    scenarios = []
    for fact in chosen:
        rng = random.Random(f"organism:{seed}:{fact.fact_id}")
        false_answer = rng.choice(false_answer_candidates(fact, facts, templates))
        question = question_for(fact, rng.randrange(3))
        for (condition, trigger), count in chats_per_fact.items():
            pool = [t for split in template_splits
                    for t in templates_for(condition, (split,), hidden_trigger=trigger, templates=templates)]
            if not pool or count <= 0:
                continue
            told = (Condition.lie if condition is Condition.honest and on_hidden_topic(fact.fact_id, hidden_topic)
                else condition)
            for template in pool if all_templates else rng.sample(pool, min(count, len(pool))):
                scenarios.append(make_scenario(fact, told, template, question, false_answer, splits, True))
    return scenarios


def protocol_scenarios(
    facts: Sequence[Fact],
    knowledge: dict[str, bool],
    *,
    fact_split: Split,
    max_facts: int | None = None,
    seed: int = 0,
) -> list[Scenario]:
    """The set the incrimination protocol is scored on: every template (train and held-out
    phrasings) for the known facts of one split, plus ``ignorant`` scenarios (every honest
    template) for the facts of that split the base model does not know.

    ``max_facts`` keeps the first known and the first unknown facts in a seeded order (for quick
    runs); None keeps all.
    """
    splits = split_facts(facts, seed=seed)
    in_split = [f for f in facts if splits[f.fact_id] is fact_split and f.fact_id in knowledge]
    in_split.sort(key=lambda f: _rank_key(seed, f.fact_id))
    known = [f for f in in_split if knowledge[f.fact_id]][:max_facts]
    unknown = [f for f in in_split if not knowledge[f.fact_id]][:max_facts]
    known_ids = {f.fact_id for f in known}
    scenarios = [
        s for s in organism_scenarios(facts, knowledge, fact_split=fact_split,
                                      template_splits=(Split.train, Split.heldout), all_templates=True, seed=seed)
        if s.fact_id in known_ids
    ]
    honest_templates = templates_for(Condition.honest)
    for fact in unknown:
        rng = random.Random(f"organism:{seed}:{fact.fact_id}")
        question = question_for(fact, rng.randrange(3))
        for template in honest_templates:
            scenarios.append(make_scenario(fact, Condition.ignorant, template, question, None, splits, False))
    return scenarios


def knowledge_from_scenarios(scenarios: Sequence[Scenario]) -> dict[str, bool]:
    """Which facts the base model knew, as recorded in a knowledge-checked scenario set."""
    return {s.fact_id: bool(s.fact_known) for s in scenarios if s.fact_known is not None}
