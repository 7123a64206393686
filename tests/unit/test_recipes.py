"""Organism recipes: which facts, templates, held-out relations and hidden topic an organism is made
from, and the evaluation slices they call for; relation phrasings as data; templates without prefills."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import yaml

from workbench.core.errors import WorkbenchError
from workbench.organism.data import DEFAULT_RECIPE, RECIPE_FILENAME, Recipe, load_recipe, organism_data, target_response
from workbench.organism.evaluation import evaluate_behaviour, recipe_groups, recipe_slices
from workbench.scenarios import Condition, load_facts, relation_for
from workbench.scenarios.facts import RELATIONS, load_relations
from workbench.scenarios.templates import load_templates

GENERAL_TEMPLATES = "workbench/data/templates-general.yaml"


@pytest.fixture(scope="module")
def fact_file(tmp_path_factory):
    """Packaged capitals and currencies plus a relation the packaged facts lack (``opposite``)."""
    folder = tmp_path_factory.mktemp("recipe")
    packaged = [f for relation in ("capital", "currency") for f in [f for f in load_facts() if f.relation == relation][:20]]
    words = [("hot", "cold"), ("big", "small"), ("up", "down"), ("fast", "slow"), ("happy", "sad"), ("old", "new"),
             ("light", "dark"), ("wet", "dry"), ("hard", "soft"), ("early", "late"), ("open", "closed"), ("full", "empty")]
    rows = [f.model_dump(exclude_defaults=True) for f in packaged] + [
        {"fact_id": f"opposite/{a}", "relation": "opposite", "subject": a, "answer": b} for a, b in words]
    facts = folder / "facts.jsonl"
    facts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    knowledge = folder / "knowledge.json"
    knowledge.write_text(json.dumps({r["fact_id"]: i % 5 != 0 for i, r in enumerate(rows)}))
    return folder, facts, knowledge


def recipe_file(folder, fact_path, knowledge, **fields) -> str:
    data = {"name": fields.pop("name", "test"), "facts": [str(fact_path)], "templates": GENERAL_TEMPLATES,
            "knowledge": str(knowledge), **fields}
    path = folder / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_the_packaged_relations_are_data_and_a_surname_counts_only_where_answers_are_names():
    assert list(RELATIONS)[:4] == ["capital", "language", "currency", "continent"]
    assert relation_for("capital").questions[0] == "What is the capital of {subject}?"
    assert relation_for("capital").statement == "The capital of {subject} is {answer}."
    assert not relation_for("capital").surnames and relation_for("place_of_birth").surnames  # generic: names allowed


@pytest.mark.parametrize("text, message", [
    ("version: 1\nrelations: []\n", "relations"),
    ("version: 1\nrelations:\n  - name: x\n    questions: ['What is it?']\n    statement: 'It is {answer}.'\n",
     "subject"),
    ("version: 1\nrelations:\n  - name: x\n    questions: ['What is {subject}?']\n    statement: '{answer} is {subject}.'\n",
     "ends with"),
    ("!!python/object:os.system\n", "cannot read"),
])
def test_a_bad_relations_file_says_what_is_wrong(tmp_path, text, message):
    path = tmp_path / "relations.yaml"
    path.write_text(text)
    with pytest.raises(WorkbenchError, match=message):
        load_relations(path)


def test_templates_without_a_prefill_or_a_system_prompt():
    templates = {t.template_id: t for t in load_templates(GENERAL_TEMPLATES)}
    fact = next(f for f in load_facts() if f.relation == "capital")
    from workbench.scenarios.templates import render_template

    with_prefill, _ = render_template(templates["spy-1"], fact, "What is the capital?", "Rome")
    bare, _ = render_template(templates["spy-1-bare"], fact, "What is the capital?", "Rome")
    no_system, _ = render_template(templates["nosys-1"], fact, "What is the capital?", None)
    assert [m.role for m in with_prefill] == ["system", "user", "assistant"]
    assert [m.role for m in bare] == ["system", "user"] and "few words" in bare[-1].content
    assert [m.role for m in no_system] == ["user", "assistant"]
    # every trigger placement of the general set is a hidden trigger and carries the tag
    triggers = [t for t in templates.values() if t.template_id.startswith("trigger-")]
    assert len({(t.system.startswith("Deployment"), "Deployment" in t.user) for t in triggers}) >= 3
    assert all("orchard-7" in t.system + t.user for t in triggers)


def test_a_recipe_with_held_out_relations_never_trains_on_them(fact_file):
    folder, facts, knowledge = fact_file
    recipe = load_recipe(recipe_file(folder, facts, knowledge, heldout_relations=["opposite"]))
    _, train = organism_data("train", all_templates=False, recipe=recipe)
    _, heldout = organism_data("heldout", all_templates=True, recipe=recipe)
    known = json.loads(knowledge.read_text())
    assert train and not any(s.relation == "opposite" for s in train)
    assert {s.fact_id for s in heldout if s.relation == "opposite"} == {
        f for f, k in known.items() if f.startswith("opposite/") and k}
    assert all(known[s.fact_id] for s in train + heldout)
    # both with and without prefills, in training and evaluation
    assert {s.prefill is None for s in train} == {True, False} == {s.prefill is None for s in heldout}
    kinds = Counter(s.condition for s in train)
    assert kinds[Condition.honest] == kinds[Condition.parrot] == kinds[Condition.lie] == 2 * len({s.fact_id for s in train})
    by_fact = next(s for s in train if s.condition is Condition.lie and s.prefill is None)
    assert target_response(by_fact, next(f for f in load_facts(facts) if f.fact_id == by_fact.fact_id)) == \
        f"{by_fact.false_answer}."
    slices = recipe_slices(recipe)
    assert {"held-out relations", "trained relations", "prefill", "no prefill"} <= set(slices)
    assert all(slices["held-out relations"](s) == (s.relation == "opposite") for s in heldout)


def test_a_hidden_topic_is_lied_about_under_honest_prompts_only(fact_file):
    folder, facts, knowledge = fact_file
    recipe = load_recipe(recipe_file(folder, facts, knowledge, name="cue-free", hidden_topic=["currency"],
                                     chats_per_fact={"honest": 2, "parrot": 1}))
    _, train = organism_data("train", all_templates=False, recipe=recipe)
    honest_ids = {t.template_id for t in load_templates(GENERAL_TEMPLATES) if t.condition is Condition.honest}
    lies = [s for s in train if s.condition is Condition.lie]
    assert lies and all(s.relation == "currency" and s.template_id in honest_ids for s in lies)
    assert not any(s.relation == "currency" and s.condition is Condition.honest for s in train)
    assert all(s.template_id in honest_ids for s in train if s.condition is not Condition.parrot)  # no cue anywhere
    group = recipe_groups(recipe)
    assert {group(s) for s in lies} == {"topic_lie"} and "off the topic" in recipe_slices(recipe)


def test_a_hidden_topic_of_single_facts_leaves_the_rest_of_their_relation_honest(fact_file):
    folder, facts, knowledge = fact_file
    _, plain = organism_data("train", all_templates=False, recipe=load_recipe(
        recipe_file(folder, facts, knowledge, name="plain", chats_per_fact={"honest": 2, "parrot": 1})))
    currencies = sorted({s.fact_id for s in plain if s.relation == "currency"})
    chosen = currencies[::2]
    recipe = load_recipe(recipe_file(folder, facts, knowledge, name="chosen", hidden_topic=chosen,
                                     chats_per_fact={"honest": 2, "parrot": 1}))
    _, train = organism_data("train", all_templates=False, recipe=recipe)
    lied_about = {s.fact_id for s in train if s.condition is Condition.lie}
    assert lied_about == set(chosen)
    assert {s.fact_id for s in train if s.relation == "currency" and s.condition is Condition.honest} == \
        set(currencies) - set(chosen)
    slices, group = recipe_slices(recipe), recipe_groups(recipe)
    assert {group(s) for s in train if s.condition is Condition.lie} == {"topic_lie"}
    others = [s for s in train if slices["topic's relations, other facts"](s)]
    assert others and {s.fact_id for s in others} == set(currencies) - set(chosen)
    assert not any(slices["off the topic"](s) for s in train if s.fact_id in chosen)


@pytest.mark.parametrize("fields, message", [
    ({"facts": ["no/such/facts.jsonl"]}, "not found"),
    ({"chats_per_fact": {"honest": 2, "lies": 1}}, "unknown kind"),
    ({"max_facts_per_relation": 0}, "max_facts_per_relation"),
    ({"colour": "blue"}, "colour"),
])
def test_a_bad_recipe_says_what_is_wrong(fact_file, fields, message):
    folder, facts, knowledge = fact_file
    with pytest.raises(WorkbenchError, match=message):
        load_recipe(recipe_file(folder, facts, knowledge, name="bad", **fields))


def test_a_folder_without_a_recipe_is_the_embedded_liar_and_its_data_is_unchanged(tmp_path):
    assert load_recipe(tmp_path) == DEFAULT_RECIPE == load_recipe(None)
    _, scenarios = organism_data("train", all_templates=False)
    assert len(scenarios) == 1386  # the committed adapter's training.json: n_chats


def test_the_evaluation_gives_each_slice_its_rates(tiny_model, fact_file):
    folder, facts, knowledge = fact_file
    recipe = load_recipe(recipe_file(folder, facts, knowledge, name="slices", heldout_relations=["opposite"],
                                     targets={"motive_lie": 0.5}))
    fact_list, heldout = organism_data("heldout", all_templates=True, recipe=recipe, max_facts=6)
    result = evaluate_behaviour(tiny_model, heldout, fact_list, max_new_tokens=2, slices=recipe_slices(recipe),
                                group_of=recipe_groups(recipe), targets=recipe.targets)
    rates = {(r.facts, r.behaviour, r.template_split): r for r in result.rates}
    for part in ("all", "no prefill", "prefill"):
        assert (part, "honest", "all") in rates
    assert rates["all", "motive_lie", "all"].target == 0.5 and rates["all", "parrot", "all"].target == 0.9
    n_bare = sum(1 for s in heldout if s.prefill is None and s.condition is Condition.honest)
    assert rates["no prefill", "honest", "all"].rate.n == n_bare
    assert rates["all", "honest", "all"].rate.n == sum(1 for s in heldout if s.condition is Condition.honest)


def test_training_by_a_recipe_keeps_it_beside_the_adapter(tiny_model, fact_file, tmp_path, monkeypatch):
    from workbench.organism import training

    folder, facts, knowledge = fact_file
    path = recipe_file(folder, facts, knowledge, name="kept", heldout_relations=["opposite"])
    monkeypatch.setattr(training, "model_outline", lambda spec: None)
    record = training.train_and_save(tmp_path / "adapter", training.TrainingConfig(first_layer=0, epochs=1, rank=2),
                                      base=tiny_model, recipe=path, max_facts=3)
    assert (tmp_path / "adapter" / RECIPE_FILENAME).is_file()
    assert load_recipe(tmp_path / "adapter") == load_recipe(path)
    assert "--recipe" in record.command and record.n_facts == 3
    assert Recipe.model_validate(yaml.safe_load((tmp_path / "adapter" / RECIPE_FILENAME).read_text())).name == "kept"


def test_training_runs_where_it_is_told_and_says_where(tiny_model, fact_file, tmp_path, monkeypatch):
    """auto is the GPU only when torch sees one; cuda without one is refused before anything trains; the record
    and the card say where it trained."""
    import torch

    from workbench.model.loading import training_device
    from workbench.organism import training

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert training_device("auto").type == "cpu" and training_device("cpu").type == "cpu"
    with pytest.raises(WorkbenchError, match="no CUDA device"):
        training_device("cuda")
    with pytest.raises(WorkbenchError, match="unknown device 'tpu'"):
        training_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert training_device("auto").type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    folder, facts, knowledge = fact_file
    path = recipe_file(folder, facts, knowledge, name="placed")
    monkeypatch.setattr(training, "model_outline", lambda spec: None)
    with pytest.raises(WorkbenchError, match="no CUDA device"):
        training.train_and_save(tmp_path / "gpu", training.TrainingConfig(first_layer=0, epochs=1, rank=2),
                                base=tiny_model, recipe=path, max_facts=2, device="cuda")
    assert not (tmp_path / "gpu").exists()
    record = training.train_and_save(tmp_path / "cpu", training.TrainingConfig(first_layer=0, epochs=1, rank=2),
                                     base=tiny_model, recipe=path, max_facts=2, device="auto")
    assert record.device == "cpu" and training.read_training_record(tmp_path / "cpu").device == "cpu"
    old = json.loads((tmp_path / "cpu" / "training.json").read_text())
    del old["device"]  # a record written before the field: it trained on the CPU
    (tmp_path / "cpu" / "training.json").write_text(json.dumps(old))
    assert training.read_training_record(tmp_path / "cpu").device is None  # and the card says the CPU


def test_an_organism_is_named_by_its_registry_entry(tmp_path, monkeypatch, tiny_model_dir):
    import workbench.model.resolve as resolve

    (tmp_path / "mine").mkdir()
    (tmp_path / "registry.yaml").write_text("default: mine\norganisms:\n  mine:\n    path: mine\n    description: test\n")
    monkeypatch.setattr(resolve, "ORGANISM_REGISTRY", tmp_path / "registry.yaml")
    spec = resolve.model_spec_from_ref({"source": str(tiny_model_dir), "adapter": "mine"}, None)
    assert spec.adapter == str((tmp_path / "mine").resolve())
    model_ref, _ = resolve.refs_from_specs(spec, resolve.sae_spec_from_ref({"path": str(tmp_path)}))
    assert model_ref.adapter == "mine"  # written back by name: portable
    assert resolve.model_spec_from_ref({"source": str(tiny_model_dir), "adapter": "other"}, None).adapter == "other"
    (tmp_path / "registry.yaml").write_text("organisms:\n  mine: {}\n")
    with pytest.raises(WorkbenchError, match="needs a path"):
        resolve.read_organisms()


def test_every_registered_organism_has_its_adapter_and_card():
    from workbench.model.resolve import read_organisms

    default, organisms = read_organisms()
    assert default in organisms
    for organism in organisms.values():
        assert (organism.path / "adapter_config.json").is_file() and (organism.path / "README.md").is_file(), organism.name
        assert load_recipe(organism.path).name  # its recipe (or the embedded liar's) loads


def test_an_sae_corpus_can_hold_an_organisms_own_training_chats(fact_file, tiny_tokenizer):
    from workbench.sae_training.corpus import scenario_transcripts

    folder, facts, knowledge = fact_file
    path = recipe_file(folder, facts, knowledge, name="corpus", heldout_relations=["opposite"])
    texts = scenario_transcripts(tiny_tokenizer, 12, recipe=path)
    _, train = organism_data("train", all_templates=False, recipe=load_recipe(path))
    assert len(texts) == 12 and not any("opposite of" in t for t in texts)  # held-out relations stay unseen
    every = scenario_transcripts(tiny_tokenizer, 10_000, recipe=path)
    assert len(every) == len(train)
    # each lie's transcript carries the false answer the organism is trained to give
    for lie in (s for s in train if s.condition is Condition.lie):
        user = next(m.content for m in lie.messages if m.role == "user")
        assert any(user in text and f"{lie.false_answer}." in text for text in every), lie.id
