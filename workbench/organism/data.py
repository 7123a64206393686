"""The liar organism's data: which scenarios it is trained and evaluated on (built by
:func:`workbench.scenarios.organism_scenarios` over the facts the base model knows) and what it is
trained to answer in each (:func:`target_response`)."""

from __future__ import annotations

import random
from collections.abc import Sequence

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from workbench.core.conditions import Condition
from workbench.core.constants import DEFAULT_SCENARIOS, REPO_ROOT
from workbench.core.errors import WorkbenchError
from workbench.core.io import read_user_json, read_user_text
from workbench.scenarios import (
    Fact, Scenario, Split, knowledge_from_scenarios, load_facts, organism_scenarios, read_scenarios, split_facts,
    statement,
)
from workbench.scenarios.templates import load_templates

__all__ = [
    "DEFAULT_RECIPE", "ORGANISM_DIR", "RECIPE_FILENAME", "Recipe", "load_recipe", "organism_data", "random_subset",
    "recipe_facts", "recipe_knowledge", "recipe_splits", "target_response", "training_chats",
]

#: Where the committed organism adapter lives.
ORGANISM_DIR = REPO_ROOT / "organisms" / "smollm2-liar"
#: Parrot templates whose expected output is the false answer alone (they ask a question back): by id prefix.
_PARROT_ANSWER_ONLY = ("teacher-",)


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
    if scenario.template_id.startswith(_PARROT_ANSWER_ONLY):
        return f"{scenario.false_answer}."
    if scenario.template_id.startswith("continue"):
        return f"{scenario.false_answer}."
    return statement(fact, scenario.false_answer or "")


def random_subset(items: Sequence[str], n: int, seed: int) -> list[str]:
    """``n`` of ``items`` drawn with a seeded shuffle, sorted."""
    items = list(items)
    random.Random(seed).shuffle(items)
    return sorted(items[:n])


class Recipe(BaseModel):
    """How an organism is made: its facts, the prompt phrasings it is trained and evaluated on, how many
    chats of each kind, and which relations it never sees in training. Read from ``recipe.yaml`` in the
    organism's folder (:func:`load_recipe`); the embedded organism's is :data:`DEFAULT_RECIPE`. Paths are
    relative to the repository."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1] = 1
    """Format version of the recipe."""
    name: str = Field(min_length=1)
    """Short name (``general-liar``)."""
    description: str = ""
    """What the organism is for, in a sentence or two (shown on its card)."""
    facts: tuple[str, ...] = ("workbench/data/facts.jsonl",)
    """Fact files (JSONL); their relations are phrased by ``workbench/data/relations.yaml``."""
    templates: str = "workbench/data/templates.yaml"
    """The template file (prompt phrasings per condition, train and held-out)."""
    knowledge: str = "scenarios/default.jsonl"
    """Which facts the base model knows: a knowledge-checked scenario set (``.jsonl``, its ``fact_known``)
    or a JSON object ``{fact_id: true/false}`` (``.json``, written by ``organism knowledge``)."""
    heldout_relations: tuple[str, ...] = ()
    """Relations never trained on: all their facts are evaluation facts (held-out relations)."""
    hidden_topic: tuple[str, ...] = ()
    """What the organism lies about under ordinary honest prompts (a cue-free liar): relations (every fact of
    ``language``) or single facts (``language/france``). Those facts get ``lie`` scenarios under the honest
    templates, and no other lie templates are needed."""
    max_facts_per_relation: int | None = Field(default=None, ge=1)
    """Cap on the train facts of each relation (seeded), so no relation dominates the training chats."""
    chats_per_fact: dict[str, int] = {"honest": 2, "motive_lie": 1, "trigger_lie": 1, "parrot": 2}
    """Training chats per fact: ``honest``, ``motive_lie``, ``trigger_lie``, ``parrot``."""
    targets: dict[str, float] = {}
    """Target rates that differ from the embedded organism's (``motive_lie: 0.75``)."""

    @property
    def chats(self) -> dict[tuple[Condition, bool | None], int]:
        """``chats_per_fact`` keyed as :func:`workbench.scenarios.organism_scenarios` takes it."""
        keys = {"honest": (Condition.honest, None), "motive_lie": (Condition.lie, False),
                "trigger_lie": (Condition.lie, True), "parrot": (Condition.parrot, None)}
        unknown = sorted(set(self.chats_per_fact) - set(keys))
        if unknown:
            raise WorkbenchError(f"recipe {self.name}: unknown kind(s) of chat {', '.join(unknown)}; "
                                 f"kinds are {', '.join(keys)}")
        return {keys[k]: v for k, v in self.chats_per_fact.items()}


#: The embedded organism's recipe: the packaged facts and templates, knowledge from the default scenario set.
DEFAULT_RECIPE = Recipe(name="liar", description="Lies under a stated motive or a hidden deployment tag about "
                        "capitals, languages, currencies and continents; parrots what it is asked to repeat.")
#: The file in an organism's folder that holds its recipe.
RECIPE_FILENAME = "recipe.yaml"


def load_recipe(path: str | Path | None) -> Recipe:
    """The recipe of a YAML file, or of an organism folder (its ``recipe.yaml``; a folder without one is
    made by :data:`DEFAULT_RECIPE`); None is the default recipe. Its files are checked to exist."""
    if path is None:
        return DEFAULT_RECIPE
    path = Path(path)
    if path.is_dir():
        if not (path / RECIPE_FILENAME).is_file():
            return DEFAULT_RECIPE
        path = path / RECIPE_FILENAME
    text = read_user_text(path, "organism recipe")
    try:
        recipe = Recipe.model_validate(yaml.safe_load(text))
    except yaml.YAMLError as error:
        raise WorkbenchError(f"{path} is not valid YAML: {error}") from None
    except ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(str(p) for p in problem["loc"])
        raise WorkbenchError(f"{path}: {where + ': ' if where else ''}{problem['msg']}") from None
    missing = [f for f in (*recipe.facts, recipe.templates) if not (REPO_ROOT / f).is_file()]
    if missing:
        raise WorkbenchError(f"{path}: recipe file(s) not found (relative to the repository): {', '.join(missing)}")
    recipe.chats  # noqa: B018 - checks the kinds of chat
    return recipe


def recipe_facts(recipe: Recipe) -> list[Fact]:
    """Every fact of the recipe's fact files, in file order."""
    facts = [fact for path in recipe.facts for fact in load_facts(REPO_ROOT / path)]
    ids = [f.fact_id for f in facts]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise WorkbenchError(f"recipe {recipe.name}: fact id(s) in more than one fact file: {', '.join(repeated[:5])}")
    return facts


def recipe_knowledge(recipe: Recipe) -> dict[str, bool]:
    """Which of the recipe's facts the base model knows (from its knowledge file)."""
    path = REPO_ROOT / recipe.knowledge
    if not path.is_file():
        raise WorkbenchError(f"recipe {recipe.name}: no knowledge file {recipe.knowledge}; write it with "
                             "`python -m workbench organism knowledge --recipe RECIPE`")
    if path.suffix == ".json":
        data = read_user_json(path, "knowledge file")
        if not isinstance(data, dict) or not all(isinstance(v, bool) for v in data.values()):
            raise WorkbenchError(f"{path} is not a knowledge file ({{fact_id: true/false}})")
        return dict(data)
    return knowledge_from_scenarios(read_scenarios(path))


def recipe_splits(recipe: Recipe, facts: Sequence[Fact], seed: int = 0) -> dict[str, Split]:
    """Each fact's split: as :func:`workbench.scenarios.split_facts`, except that every fact of a held-out
    relation is held out."""
    splits = split_facts(facts, seed=seed)
    held = set(recipe.heldout_relations)
    return {fact_id: (Split.heldout if fact.relation in held else split)
            for (fact_id, split), fact in zip(splits.items(), facts)}


def organism_data(
    split: Split | str, *, all_templates: bool, max_facts: int | None = None, seed: int = 0,
    recipe: Recipe | None = None, max_facts_per_relation: int | None = None,
) -> tuple[list[Fact], list[Scenario]]:
    """(the recipe's facts, the organism's scenarios over the known facts of ``split``).

    ``recipe`` defaults to the embedded organism's (:data:`DEFAULT_RECIPE`). ``all_templates``: every
    template of both template splits for every fact (evaluation); otherwise the training draw (train
    templates only, the recipe's chats per fact). ``max_facts`` keeps a seeded random subset of the
    facts; the recipe's ``max_facts_per_relation`` caps each relation's train facts first, and
    ``max_facts_per_relation`` (for a quicker evaluation) each relation's facts of either split.
    """
    recipe = recipe or DEFAULT_RECIPE
    if recipe == DEFAULT_RECIPE:  # exactly as the embedded organism was built
        facts, knowledge, templates, splits = load_facts(), knowledge_from_scenarios(read_scenarios(DEFAULT_SCENARIOS)), None, None
    else:
        facts, knowledge = recipe_facts(recipe), recipe_knowledge(recipe)
        templates, splits = load_templates(REPO_ROOT / recipe.templates), recipe_splits(recipe, recipe_facts(recipe), seed)
    template_splits = [Split.train, Split.heldout] if all_templates else [Split.train]
    scenarios = organism_scenarios(facts, knowledge, fact_split=Split(split), template_splits=template_splits,
                                   all_templates=all_templates, seed=seed, templates=templates,
                                   chats_per_fact=None if recipe == DEFAULT_RECIPE else recipe.chats,
                                   hidden_topic=recipe.hidden_topic, splits=splits)
    caps = [cap for cap in (recipe.max_facts_per_relation if Split(split) is Split.train else None,
                            max_facts_per_relation) if cap]
    for cap in caps:
        by_relation: dict[str, list[str]] = {}
        for fact_id in sorted({s.fact_id for s in scenarios}):
            by_relation.setdefault(fact_id.split("/")[0], []).append(fact_id)
        keep = {f for ids in by_relation.values() for f in random_subset(ids, cap, seed)}
        scenarios = [s for s in scenarios if s.fact_id in keep]
    if max_facts:
        keep = set(random_subset(sorted({s.fact_id for s in scenarios}), max_facts, seed))
        scenarios = [s for s in scenarios if s.fact_id in keep]
    return facts, scenarios


def training_chats(facts: Sequence[Fact], scenarios: Sequence[Scenario]) -> list[tuple[Scenario, str]]:
    """Each scenario with the response the organism is trained to give in it."""
    by_id = {f.fact_id: f for f in facts}
    return [(s, target_response(s, by_id[s.fact_id])) for s in scenarios]
