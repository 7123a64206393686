"""Stage 1, scenarios: chat prompts with their ground truth, the facts and templates they are built
from, and how a model's answer to one is judged. Imports only ``workbench.core``.

A *scenario* is one prompt (chat messages that end where the model answers) together
with what is true about it: the true answer, the false answer at stake (if any), where
a falsehood appears in the context (if it does) and its *condition* (the one table of
conditions is :mod:`workbench.core.conditions`):

- ``honest``: a neutral prompt asking the question;
- ``lie``: the system prompt gives a motive or instruction to deceive, and the context does
  not assert the false answer (it may name it in a question or among a question's options);
- ``parrot``: the user turn contains a false statement and asks for it to be repeated,
  quoted or continued; ``falsehood_span`` points at the false answer in it;
- ``ignorant``: the honest prompt, for a fact the model does not know.

The stage owns:

- ``records``: the scenario record and scenario files (JSONL, :func:`read_scenarios`,
  :func:`write_scenarios`, every bad line reported), and :func:`scenario_set_hash`; a researcher
  brings their own file;
- ``facts``: facts and relations (:func:`load_facts` reads the packaged country facts or a researcher's
  file; a relation outside the packaged four is phrased generically, :func:`relation_for`), answer matching
  (plurals, aliases, surnames) and whether a prompt asserts an answer (:func:`asserted_in`);
- ``templates``: the prompt phrasings of each condition, data in ``workbench/data/templates.yaml``;
- ``building``: the knowledge check and the sets built from facts: :func:`build_contrast_set`
  (*matched* honest / lie / parrot scenarios per fact, split into train and held-out facts, with
  some templates kept for held-out evaluation only), the liar organism's sets and the set the
  incrimination protocol is scored on (:func:`protocol_scenarios`);
- ``judging``: what an answer says (truth, the stated falsehood, another falsehood, nothing):
  :func:`judge` and :class:`AnswerJudge` (from a scenario set's own answers, no fact file needed); the scenarios of a condition narrowed by what the model did
  (``lie+false``, ``lie+truth``): :func:`select_by_behaviour`.
"""

from __future__ import annotations

from workbench.scenarios.building import (
    TRAINING_CHATS_PER_FACT, build_contrast_set, check_knowledge, false_answer_candidates, honest_question,
    honest_questions, knowledge_from_scenarios, make_scenario, on_hidden_topic, organism_scenarios, protocol_scenarios,
    split_facts,
)
from workbench.scenarios.facts import (
    DEFAULT_FACTS_PATH, RELATIONS, Fact, Relation, answer_matches, asserted_in, load_facts, mask_subject,
    normalise_answer, relation_for, surname,
)
from workbench.scenarios.judging import (
    BEHAVIOUR_JUDGEMENTS, FALSE_JUDGEMENTS, JUDGEMENTS, NO_ANSWER, OTHER_FALSE, STATED_FALSE, TRUTH, AnswerJudge,
    BehaviourSelection, behaviour_group, behaviour_of, judge, select_by_behaviour,
)
from workbench.scenarios.records import (
    Condition, FactFileError, FalsehoodSpan, FileProblem, Message, RecordFileError, Scenario, ScenarioFileError,
    Split, parse_split, read_scenarios, scenario_set_hash, write_scenarios,
)
from workbench.scenarios.templates import (
    ANSWER_INSTRUCTION, DEFAULT_TEMPLATES_PATH, HIDDEN_TRIGGER_PREFIX, KNOWLEDGE_CHECK_TEMPLATE, TEMPLATE_SLOTS,
    TEMPLATES, ConditionTemplate, TemplateFile, TemplateFileError, answer_prefill, get_template, is_hidden_trigger,
    load_templates, question_for, render_template, statement, templates_for,
)

__all__ = [
    # records
    "Condition", "FactFileError", "FalsehoodSpan", "FileProblem", "Message", "RecordFileError", "Scenario",
    "ScenarioFileError", "Split", "parse_split", "read_scenarios", "scenario_set_hash", "write_scenarios",
    # facts
    "DEFAULT_FACTS_PATH", "RELATIONS", "Fact", "Relation", "answer_matches", "asserted_in", "load_facts",
    "mask_subject", "normalise_answer", "relation_for", "surname",
    # templates
    "ANSWER_INSTRUCTION", "DEFAULT_TEMPLATES_PATH", "HIDDEN_TRIGGER_PREFIX", "KNOWLEDGE_CHECK_TEMPLATE",
    "TEMPLATE_SLOTS", "TEMPLATES", "ConditionTemplate", "TemplateFile", "TemplateFileError", "answer_prefill",
    "get_template", "is_hidden_trigger", "load_templates", "question_for", "render_template", "statement",
    "templates_for",
    # building
    "TRAINING_CHATS_PER_FACT", "build_contrast_set", "check_knowledge", "false_answer_candidates", "honest_question",
    "honest_questions", "knowledge_from_scenarios", "make_scenario", "on_hidden_topic", "organism_scenarios",
    "protocol_scenarios", "split_facts",
    # judging
    "BEHAVIOUR_JUDGEMENTS", "FALSE_JUDGEMENTS", "JUDGEMENTS", "NO_ANSWER", "OTHER_FALSE", "STATED_FALSE", "TRUTH",
    "AnswerJudge", "BehaviourSelection", "behaviour_group", "behaviour_of", "judge", "select_by_behaviour",
]
