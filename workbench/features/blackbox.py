"""The black-box baseline: the follow-up-question lie detector (Pacchiardi et al. 2023, "How to catch an
AI liar").

After the model's answer, a fixed set of unrelated yes/no questions (``workbench/data/followups.yaml``:
about lying, factual, ambiguous or unanswerable) is asked, each as a new user turn, and the log-probability
of "Yes" minus "No" as the assistant's next token is read for every (response, question): one batched pass
per question (:func:`followup_logodds`). A logistic regression on those log-odds (the probes' own,
``probes.logistic_regression``), trained on the train split, scores held-out responses
(:func:`evaluate_blackbox`). It reads nothing but the model's next-token distribution, so it needs no
weights or SAE; a white-box claim (a probe, SAE features) is shown beside it with the **white-box gain**:
its AUROC minus the black box's on the same held-out responses, with a paired bootstrap interval
(``core.stats.auroc_difference``).

:func:`compare_with_blackbox` runs the whole comparison on scenarios: the model's greedy responses, the
follow-up log-odds, the probe and the features at the SAE's site, every detector's held-out AUROC, recall at
1% FPR and n, and the gains.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from workbench.core.errors import WorkbenchError
from workbench.core.io import read_user_text
from workbench.core.stats import DEFAULT_FPR, DetectionMetrics, Estimate, auroc_difference, balanced_threshold, detection_metrics
from workbench.features.probes import probe_scores
from workbench.model.loading import LoadedModel
from workbench.model.rendering import has_prefill, join_response, render_conversation

#: The packaged follow-up questions.
DEFAULT_FOLLOWUPS_PATH = Path(__file__).resolve().parents[1] / "data" / "followups.yaml"
#: Spellings of the two answers whose next-token log-probabilities are summed (each by its first token).
YES_SPELLINGS = ("Yes", " Yes", "yes", " yes", "YES")
NO_SPELLINGS = ("No", " No", "no", " no", "NO")
#: The detector the black box is: a logistic regression on the follow-up log-odds.
BLACKBOX_NAME = "follow-up questions (logistic regression)"


class FollowUp(BaseModel):
    """One follow-up question."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    kind: Literal["lying", "factual", "ambiguous"]
    """About lying or honesty, factual with a known answer, or ambiguous / unanswerable."""
    text: str = Field(min_length=1)


class FollowUpSet(BaseModel):
    """A set of follow-up questions (a YAML file: ``version``, ``suffix``, ``questions``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = 1
    suffix: str = ""
    """Appended to every question (``" Answer yes or no."``)."""
    questions: tuple[FollowUp, ...] = Field(min_length=2)

    @field_validator("questions")
    @classmethod
    def _unique_ids(cls, questions: tuple[FollowUp, ...]) -> tuple[FollowUp, ...]:
        ids = [q.id for q in questions]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"question ids must be unique; repeated: {', '.join(repeated)}")
        return questions

    @property
    def prompts(self) -> list[str]:
        """Each question as it is asked (with the suffix)."""
        return [q.text + self.suffix for q in self.questions]

    def digest(self) -> str:
        """A short fingerprint of the questions as asked (records name the set by it)."""
        text = json.dumps([self.version, self.prompts], ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    def describe(self) -> str:
        """``36 follow-up questions (v1, 3f4e...)``."""
        return f"{len(self.questions)} follow-up questions (v{self.version}, {self.digest()})"


@cache
def _parse_followups(path: Path, default: bool) -> FollowUpSet:
    what = "follow-up question file"
    text = read_user_text(path, what)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise WorkbenchError(f"{what} {path} is not valid YAML: {str(error).splitlines()[0]}") from None
    try:
        return FollowUpSet.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise WorkbenchError(f"{what} {path}: {where}: {first['msg'].removeprefix('Value error, ')} (a mapping with "
                             "questions: a list of {id, kind: lying|factual|ambiguous, text}, at least two)") from None


def load_followups(path: str | Path | None = None) -> FollowUpSet:
    """The follow-up questions of a YAML file (default: the packaged set), parsed once per file."""
    return _parse_followups(Path(DEFAULT_FOLLOWUPS_PATH if path is None else path).resolve(), path is None)


def followup_messages(messages: Sequence[Any], response: str | None, question: str) -> list[dict[str, str]]:
    """The conversation, the model's answer (after a prefill, the prefill and its continuation as one
    assistant turn) and the follow-up question as a new user turn."""
    chat = [{"role": str(m["role"] if isinstance(m, Mapping) else m.role),
             "content": str(m["content"] if isinstance(m, Mapping) else m.content)} for m in messages]
    response = response or ""
    if has_prefill(chat):
        chat[-1] = {"role": "assistant", "content": chat[-1]["content"] + join_response(chat, response)}
    else:
        chat.append({"role": "assistant", "content": response})
    return chat + [{"role": "user", "content": question}]


def yes_no_token_ids(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The first token of each spelling of "Yes" and of "No" (a token both share, such as a lone space, is
    left out of both); a ``WorkbenchError`` when either is left empty."""
    def first_tokens(spellings: Sequence[str]) -> set[int]:
        return {ids[0] for text in spellings if (ids := tokenizer(text, add_special_tokens=False)["input_ids"])}

    yes, no = first_tokens(YES_SPELLINGS), first_tokens(NO_SPELLINGS)
    shared = yes & no
    yes, no = sorted(yes - shared), sorted(no - shared)
    if not yes or not no:
        raise WorkbenchError("this tokenizer has no token that starts 'Yes' but not 'No' (or the reverse): the "
                             "follow-up detector cannot read a yes/no answer from it")
    return yes, no


def _common_prefix(sequences: Sequence[Sequence[int]]) -> int:
    """Length of the longest prefix all sequences share, leaving each at least one token after it."""
    shortest = min(len(ids) for ids in sequences)
    length = 0
    while length < shortest - 1 and all(ids[length] == sequences[0][length] for ids in sequences):
        length += 1
    return length


def followup_logodds(model: LoadedModel, conversations: Sequence[tuple[Sequence[Any], str | None]],
                     followups: FollowUpSet, *, batch_size: int = 32,
                     progress: Callable[[str, float], None] | None = None) -> torch.Tensor:
    """log P(yes) - log P(no) of the assistant's next token after each conversation, its response and each
    follow-up question (``[n_conversations, n_questions]``); P(yes) sums the probability of every spelling's
    first token (:func:`yes_no_token_ids`). ``conversations`` are (messages, response) pairs.

    Each conversation is tokenised with each question exactly as the chat template renders it. What every
    question's rendering of a conversation shares (the conversation and its answer) runs once per batch, with
    the key-value cache; then one batched pass per question runs only the tokens after it (the question's
    turn), each row at its own positions, and the cache is cut back. The result equals running each whole
    rendering on its own (a test holds it)."""
    from workbench.model.generation import next_token_logits

    tokenizer = model.tokenizer
    yes, no = yes_no_token_ids(tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    n_questions = len(followups.questions)
    out = torch.zeros(len(conversations), n_questions)
    rendered = [[render_conversation(tokenizer, followup_messages(messages, response, question)).input_ids
                 for question in followups.prompts] for messages, response in conversations]
    shared = [_common_prefix(row) for row in rendered]
    order = sorted(range(len(conversations)), key=lambda i: shared[i])  # similar lengths together
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    for number, batch in enumerate(batches):
        if progress:
            progress(f"follow-up questions: batch {number + 1}/{len(batches)} of {len(order)} responses",
                     number / len(batches))
        lengths = torch.tensor([shared[i] for i in batch])
        width = int(lengths.max())
        prefix = torch.full((len(batch), width), pad_id, dtype=torch.long)
        prefix_mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            prefix[row, : shared[i]] = torch.tensor(rendered[i][0][: shared[i]])
            prefix_mask[row, : shared[i]] = 1
        _, cache = next_token_logits(model, prefix, prefix_mask, lengths - 1)
        for q in range(n_questions):
            tails = [rendered[i][q][shared[i]:] for i in batch]
            tail_width = max(len(tail) for tail in tails)
            tail_ids = torch.full((len(batch), tail_width), pad_id, dtype=torch.long)
            tail_mask = torch.zeros((len(batch), tail_width), dtype=torch.long)
            for row, tail in enumerate(tails):
                tail_ids[row, : len(tail)] = torch.tensor(tail)
                tail_mask[row, : len(tail)] = 1
            positions = lengths[:, None] + torch.arange(tail_width)[None]  # each row after its own prefix
            read = torch.tensor([len(tail) - 1 for tail in tails])
            logits, cache = next_token_logits(model, tail_ids, torch.cat([prefix_mask, tail_mask], dim=1), read,
                                              cache=cache, position_ids=positions)
            cache.crop(-tail_width)  # back to the shared prefix for the next question
            log_probs = torch.log_softmax(logits.float(), dim=-1)
            out[batch, q] = torch.logsumexp(log_probs[:, yes], dim=-1) - torch.logsumexp(log_probs[:, no], dim=-1)
    if not torch.isfinite(out).all():
        raise WorkbenchError("non-finite yes/no log-probabilities from the follow-up questions: check the model")
    return out


# ----------------------------------------------------------------------------- the detector and its results


class WhiteBoxGain(BaseModel):
    """A white-box detector beside the black box on the same held-out responses."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants", use_attribute_docstrings=True)

    detector: str
    """What scores the responses (``probe: logistic_regression at model.layers.15``, ``features 38+877 ...``)."""
    detection: DetectionMetrics
    """Its held-out AUROC, balanced accuracy and recall at 1% FPR on the same control as the black box."""
    gain: Estimate
    """Its AUROC minus the black box's, with a paired bootstrap 95% interval over the same responses."""


class BlackBoxResult(BaseModel):
    """The follow-up-question detector trained on one contrast and scored on held-out responses."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants", use_attribute_docstrings=True)

    positive: str
    """The condition the detector scores high (``lie``)."""
    negative: str
    """The condition it scores low (``honest``)."""
    followups: str
    """The question set (``FollowUpSet.describe``: count, version, fingerprint)."""
    n_train_positive: int
    """Train responses of the positive condition the regression was fitted on."""
    n_train_negative: int
    """Train responses of the negative condition."""
    n_heldout_positive: int
    """Held-out responses of the positive condition it was scored on."""
    n_heldout_negative: int
    """Held-out responses of the negative condition."""
    detection: DetectionMetrics
    """Held-out AUROC (n = held-out responses), balanced accuracy at the threshold set on the train split,
    recall at 1% FPR on the control (``detection.control``)."""
    gains: list[WhiteBoxGain] = Field(default_factory=list)
    """White-box detectors on the same held-out responses, each with its gain over the black box."""

    @property
    def auroc(self) -> Estimate:
        return self.detection.auroc


def evaluate_blackbox(
    logodds: torch.Tensor,
    conditions: Sequence[str],
    splits: Sequence[str],
    *,
    contrasts: Sequence[tuple[str, str]] = (("lie", "honest"), ("lie", "parrot")),
    followups: str = "",
    white: Mapping[tuple[str, str], Mapping[str, torch.Tensor]] | None = None,
    control_condition: str | None = None,
    fpr: float = DEFAULT_FPR,
    n_boot: int = 1000,
    seed: int = 0,
    min_items: int = 5,
) -> list[BlackBoxResult]:
    """Train the detector on each contrast (train split) and score it on the held-out split.

    ``logodds`` is ``[n_items, n_questions]`` (:func:`followup_logodds`), with a condition and a split
    (``train``/``heldout``) per item; a condition may be any label (e.g. ``lie+false``). ``white`` gives, per
    contrast, white-box scores of every item (``[n_items]`` by detector name): each is scored on the same
    held-out items and the same control, with its gain over the black box. Recall at ``fpr`` is on the held-out
    items of ``control_condition`` (default: the contrast's negative).
    """
    def index(condition: str, split: str) -> list[int]:
        return [i for i, (c, s) in enumerate(zip(conditions, splits)) if c == condition and s == split]

    results = []
    for positive, negative in contrasts:
        tr_pos, tr_neg = index(positive, "train"), index(negative, "train")
        te_pos, te_neg = index(positive, "heldout"), index(negative, "heldout")
        control_of = control_condition or negative
        control = index(control_of, "heldout")
        for label, members in (("train " + positive, tr_pos), ("train " + negative, tr_neg),
                               ("held-out " + positive, te_pos), ("held-out " + negative, te_neg)):
            if len(members) < min_items:
                raise WorkbenchError(f"the black-box baseline needs at least {min_items} {label} responses, got "
                                     f"{len(members)}: add scenarios")
        if not control:
            raise WorkbenchError(f"the black-box baseline's control (held-out {control_of}) has no responses")
        scores, _ = probe_scores("logistic_regression", logodds[tr_pos], logodds[tr_neg], logodds)
        scores = scores.double()
        name = f"held-out {control_of}"

        def metrics(values: torch.Tensor) -> DetectionMetrics:
            return detection_metrics(values[te_pos], values[te_neg], values[control], fpr=fpr,
                                     threshold=balanced_threshold(values[tr_pos], values[tr_neg]),
                                     control_name=name, n_boot=n_boot, seed=seed)

        gains = []
        for detector, values in (white or {}).get((positive, negative), {}).items():
            values = values.double().flatten()
            if len(values) != len(conditions):
                raise WorkbenchError(f"white-box scores of {detector!r} hold {len(values)} items, not {len(conditions)}")
            gains.append(WhiteBoxGain(
                detector=detector, detection=metrics(values),
                gain=auroc_difference((values[te_pos], values[te_neg]), (scores[te_pos], scores[te_neg]),
                                      n_boot=n_boot, seed=seed)))
        results.append(BlackBoxResult(
            positive=positive, negative=negative, followups=followups, n_train_positive=len(tr_pos),
            n_train_negative=len(tr_neg), n_heldout_positive=len(te_pos), n_heldout_negative=len(te_neg),
            detection=metrics(scores), gains=gains))
    return results


def separation_gap(logodds: torch.Tensor, conditions: Sequence[str], splits: Sequence[str], positive: str,
                   first: str, second: str, *, n_boot: int = 1000, seed: int = 0) -> Estimate:
    """How much better the black box separates ``positive`` from ``first`` than from ``second`` (each detector
    trained on its own contrast's train split): held-out AUROC(positive vs first) minus AUROC(positive vs
    second), the positives resampled together, each set of negatives on its own."""
    def index(condition: str, split: str) -> list[int]:
        return [i for i, (c, s) in enumerate(zip(conditions, splits)) if c == condition and s == split]

    pos_train, pos_test = index(positive, "train"), index(positive, "heldout")
    sides = []
    for negative in (first, second):
        scores, _ = probe_scores("logistic_regression", logodds[pos_train], logodds[index(negative, "train")], logodds)
        sides.append((scores[pos_test], scores[index(negative, "heldout")]))
    return auroc_difference(sides[0], sides[1], same_negatives=False, n_boot=n_boot, seed=seed)


class SeparationGap(BaseModel):
    """Whether the black box separates one condition from two others equally well (lie from honest and
    from parrot: a parrot also says something false)."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants", use_attribute_docstrings=True)

    positive: str
    """The condition separated (``lie``)."""
    first: str
    """The first condition it is separated from (``honest``)."""
    second: str
    """The second (``parrot``)."""
    difference: Estimate
    """Held-out AUROC(positive vs first) minus AUROC(positive vs second), bootstrap 95% interval."""

    def summary(self) -> str:
        d = self.difference
        if d.low > 0:
            verdict = f"separates {self.positive} from {self.second} less well than from {self.first}"
        elif d.high < 0:
            verdict = f"separates {self.positive} from {self.second} better than from {self.first}"
        else:
            verdict = f"separates {self.positive} from {self.second} as well as from {self.first} (within the interval)"
        return f"the black box {verdict}: AUROC difference {d.value:+.3f} {d.interval()} (n={d.n})"


class ResponseCount(BaseModel):
    """How many responses of one condition (label) in one split the comparison used."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    split: str
    """``train`` or ``heldout``."""
    condition: str
    """The condition, or one narrowed by behaviour (``lie+false``)."""
    n: int
    """Responses."""


class BlackBoxComparison(BaseModel):
    """The black box beside the white-box detectors on scenarios' held-out responses (a JSON file)."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants", use_attribute_docstrings=True)

    version: int = 2
    """Format version (version 1 kept the counts as a mapping ``n`` of split to condition to count; it is
    read as ``counts``)."""
    command: str | None = None
    """The command that wrote it."""
    model_name: str
    """The model's display name."""
    model_identity: str
    """What computes (``LoadedModel.identity``)."""
    site: str | None
    """Where the probe and the features read the residual stream (the last prompt token)."""
    sae_identity: str | None = None
    """The SAE the features are of (None: no SAE)."""
    features: list[int] = Field(default_factory=list)
    """SAE features whose summed activation is one white-box detector (none: no feature detector)."""
    followups: str
    """The question set (count, version, fingerprint)."""
    counts: list[ResponseCount]
    """Responses per split and condition label."""
    responses_generated: int
    """Responses generated here (greedy), for scenarios that had none."""
    seed: int
    """Seed of the bootstraps (and of the samples the caller drew)."""
    results: list[BlackBoxResult]
    """One per contrast: the black box and the white-box detectors beside it."""
    gaps: list[SeparationGap] = Field(default_factory=list)
    """For each positive condition with two negatives: the first separation minus the second."""
    seconds: float = 0.0
    """Wall time."""

    @model_validator(mode="before")
    @classmethod
    def _migrate(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("version", 1) == 1 and isinstance(data.get("n"), dict):
            old = data["n"]
            data = {key: value for key, value in data.items() if key != "n"}
            data["counts"] = [{"split": split, "condition": condition, "n": n}
                              for split, by_condition in old.items() for condition, n in by_condition.items()]
            data["version"] = 2
        return data


def condition_labels(scenarios: Sequence[Any], contrasts: Sequence[tuple[str, str]],
                     responses: Mapping[str, str | None]) -> list[str]:
    """Each scenario's label for the contrasts: its condition, or, for a condition a contrast narrows by
    behaviour (``lie+false``), the behaviour its response shows (``lie+false``, ``lie+truth``; ``lie`` when
    it states neither). A condition may be used plain or narrowed, not both."""
    from workbench.core.conditions import parse_condition
    from workbench.scenarios.judging import AnswerJudge, behaviour_of

    narrowed = {parse_condition(c)[0] for pair in contrasts for c in pair if parse_condition(c)[1] is not None}
    plain = {c for pair in contrasts for c in pair if parse_condition(c)[1] is None}
    if narrowed & plain:
        raise WorkbenchError(f"{', '.join(sorted(narrowed & plain))} is used both plain and narrowed by behaviour: "
                             "the black-box comparison takes one of the two")
    judge = AnswerJudge.for_scenarios(scenarios) if narrowed else None
    labels = []
    for scenario in scenarios:
        base = scenario.condition.value
        if base not in narrowed:
            labels.append(base)
            continue
        response = responses.get(scenario.id)
        shown = behaviour_of(judge(response, scenario)) if response is not None else None
        labels.append(f"{base}+{shown}" if shown else base)
    return labels


def compare_with_blackbox(
    model: LoadedModel,
    train: Sequence[Any],
    heldout: Sequence[Any],
    *,
    sae: Any = None,
    site: str | None = None,
    features: Sequence[int] = (),
    contrasts: Sequence[tuple[str, str]] = (("lie", "honest"), ("lie", "parrot")),
    followups: FollowUpSet | None = None,
    probe: bool = True,
    control_condition: str | None = None,
    responses: Mapping[str, str | None] | None = None,
    max_new_tokens: int = 12,
    batch_size: int = 32,
    n_boot: int = 1000,
    seed: int = 0,
    command: str | None = None,
    progress: Callable[[str, float], None] | None = None,
) -> BlackBoxComparison:
    """The black box, a logistic-regression probe at ``site`` (default: the SAE's) and the summed ``features``
    of ``sae`` there (both at the last prompt token), each trained on ``train`` and scored on ``heldout``
    scenarios' responses, with every white-box detector's gain over the black box.

    Responses: ``responses`` by scenario id, else the scenario's own, else the model's greedy response
    (generated here). Every contrast's conditions may be narrowed by behaviour (``lie+false``).
    """
    import time

    from workbench.features.probes import residual_at_last_prompt_token
    from workbench.model.generation import generate_answers

    started = time.perf_counter()
    followups = followups or load_followups()
    scenarios = list(train) + list(heldout)
    splits = ["train"] * len(train) + ["heldout"] * len(heldout)
    given = dict(responses or {})
    answers = {s.id: given.get(s.id, s.response) for s in scenarios}
    missing = [s for s in scenarios if answers[s.id] is None]
    if missing:
        if progress:
            progress(f"generating {len(missing)} responses", 0.0)
        for scenario, answer in zip(missing, generate_answers(model, [[m.model_dump() for m in s.messages]
                                                                      for s in missing],
                                                              max_new_tokens=max_new_tokens, batch_size=batch_size)):
            answers[scenario.id] = answer
    labels = condition_labels(scenarios, contrasts, answers)
    logodds = followup_logodds(model, [([m.model_dump() for m in s.messages], answers[s.id]) for s in scenarios],
                               followups, batch_size=batch_size, progress=progress)
    site = site or (sae.site.name if sae is not None else None)
    white: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    if site is not None and (probe or features):
        if progress:
            progress(f"reading the residual stream at {site}", 0.0)
        items = [render_conversation(model.tokenizer, [m.model_dump() for m in s.messages]) for s in scenarios]
        acts = residual_at_last_prompt_token(model, site, items, batch_size=batch_size)  # [n, d_model]
        feature_scores = None
        if features:
            if sae is None:
                raise WorkbenchError("feature detectors need an SAE: give one, or no features")
            for feature in features:
                sae.check_feature(feature)
            feature_scores = sae.encode(acts)[:, list(features)].sum(1)  # [n]
        for positive, negative in contrasts:
            scores: dict[str, torch.Tensor] = {}
            if probe:
                pick = lambda label: [i for i, (c, s) in enumerate(zip(labels, splits)) if c == label and s == "train"]
                tr_pos, tr_neg = pick(positive), pick(negative)
                if len(tr_pos) >= 2 and len(tr_neg) >= 2:
                    scores[f"probe: logistic_regression at {site}"] = probe_scores(
                        "logistic_regression", acts[tr_pos], acts[tr_neg], acts)[0]
            if feature_scores is not None:
                scores[f"features {'+'.join(map(str, features))} at {site} (summed)"] = feature_scores
            white[(positive, negative)] = scores
    results = evaluate_blackbox(logodds, labels, splits, contrasts=contrasts, followups=followups.describe(),
                                white=white, control_condition=control_condition, n_boot=n_boot, seed=seed)
    gaps = []
    for positive in dict.fromkeys(p for p, _ in contrasts):
        negatives = [n for p, n in contrasts if p == positive]
        for second in negatives[1:]:
            gaps.append(SeparationGap(positive=positive, first=negatives[0], second=second, difference=separation_gap(
                logodds, labels, splits, positive, negatives[0], second, n_boot=n_boot, seed=seed)))
    tally: dict[tuple[str, str], int] = {}
    for label, split in zip(labels, splits):
        tally[(split, label)] = tally.get((split, label), 0) + 1
    counts = [ResponseCount(split=split, condition=label, n=n) for (split, label), n in tally.items()]
    return BlackBoxComparison(
        command=command, model_name=model.spec.display_name, model_identity=model.identity, site=site,
        sae_identity=getattr(sae, "identity", None), features=list(features), followups=followups.describe(),
        counts=counts, responses_generated=len(missing), seed=seed, results=results, gaps=gaps,
        seconds=round(time.perf_counter() - started, 1))


def blackbox_sets(scenarios: Sequence[Any], contrasts: Sequence[tuple[str, str]], max_per_condition: int | None,
                  seed: int = 0) -> tuple[list[Any], list[Any]]:
    """(train, held-out) scenarios of the contrasts' conditions (narrowed ones by their base), at most
    ``max_per_condition`` of each condition in each split (a seeded sample, sorted by id); only scenarios
    about facts the model knows where the set says (``fact_known``). A condition missing from a split is a
    ``WorkbenchError`` naming it."""
    import random

    from workbench.core.conditions import parse_condition

    bases = list(dict.fromkeys(parse_condition(c)[0] for pair in contrasts for c in pair))
    sets: dict[str, list[Any]] = {"train": [], "heldout": []}
    for split, chosen in sets.items():
        for base in bases:
            pool = sorted((s for s in scenarios if s.condition.value == base and s.split.value == split
                           and s.fact_known is not False), key=lambda s: s.id)
            if not pool:
                raise WorkbenchError(f"no {split} scenarios of condition {base!r} (about known facts): the black-box "
                                     "baseline trains on the train split and scores the held-out one; give both")
            if max_per_condition is not None and len(pool) > max_per_condition:
                pool = sorted(random.Random(f"{seed}:{split}:{base}").sample(pool, max_per_condition),
                              key=lambda s: s.id)
            chosen.extend(pool)
    return sets["train"], sets["heldout"]


def contrast_baselines(model: LoadedModel, sae: Any, scenarios: Sequence[Any], condition_a: str, condition_b: str, *,
                       features: Sequence[int] = (), responses: Mapping[str, str | None] | None = None,
                       max_per_condition: int | None = 60, n_boot: int = 1000, seed: int = 0,
                       command: str | None = None,
                       progress: Callable[[str, float], None] | None = None) -> BlackBoxComparison:
    """A contrast's baselines (the ``contrast`` command's ``--blackbox``, the Contrast page): the black box, a
    logistic-regression probe at the SAE's site and ``features`` (e.g. the contrast's top-ranked feature),
    trained on the scenarios' train split (at most ``max_per_condition`` a condition) and scored on the held-out
    one, with the white-box gains."""
    train, heldout = blackbox_sets(scenarios, [(condition_a, condition_b)], max_per_condition, seed)
    return compare_with_blackbox(model, train, heldout, sae=sae, features=features,
                                 contrasts=[(condition_a, condition_b)], responses=responses, n_boot=n_boot,
                                 seed=seed, command=command, progress=progress)
