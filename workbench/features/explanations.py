"""Explanations of features, written from their examples and scored, as EleutherAI's delphi scores them.

Data flow: a capture and a feature -> examples chosen by the feature's per-item maximum (the top ones and
a spread of the rest to explain from; held-out activating and non-activating items to score on) -> each
example shown either as the **whole conversation** (speaker turns marked ``[system]``/``[user]``/
``[assistant]``, activating tokens marked ``<<like this>>``) or as a short **window** of tokens around
its maximum (the usual dashboard snippet) -> an explainer writes one sentence -> a scorer, given only the
sentence, answers two questions per held-out example:

- **detection**: is the feature active anywhere in this text (held-out activating vs non-activating items)?
- **fuzzing**: are the marked tokens the ones it is active on (the true activating tokens vs as many
  other tokens of the same text)?

Each score is the balanced accuracy of the scorer's yes/no (P(yes) > 0.5) with a bootstrap 95% interval and
n, and the AUROC of its P(yes). Running both context modes on the same feature measures, per feature,
whether whole-conversation context gives a better explanation.

Explainers (and scorers) are pluggable (``Explainer``): a local Hugging Face model through the workbench's
``LoadedModel`` (``LocalExplainer``), or an OpenAI-compatible chat endpoint named by environment variables
(``EndpointExplainer.from_environment``; nothing is sent anywhere unless the user sets them).

Explanations are kept in a small JSON store keyed by model, adapter, SAE, site and feature (``read_store``,
``add_explanations``; atomic writes), with the prompt, the explainer and the settings that wrote them.
"""

from __future__ import annotations

import json
import os
import random
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from pydantic import BaseModel, ConfigDict, Field

from workbench.core.constants import cache_dir
from workbench.core.errors import WorkbenchError, check_number
from workbench.core.io import read_user_json, write_text_atomically
from workbench.core.positions import ROLES
from workbench.core.stats import Estimate, auroc_estimate, balanced_accuracy_estimate
from workbench.features.capture import Capture
from workbench.features.evidence import FeatureExample, item_example, item_maxima

ContextMode = Literal["conversation", "window"]
MODES: tuple[str, ...] = ("conversation", "window")
MARK_OPEN, MARK_CLOSE = "<<", ">>"
#: Chat-template tokens that are never shown (the turn markers replace them).
TEMPLATE_TOKENS = frozenset({"<|im_start|>", "<|im_end|>", "<|endoftext|>", "<s>", "</s>", "<|begin_of_text|>",
                             "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"})
ENV_BASE_URL = "WORKBENCH_EXPLAINER_BASE_URL"
ENV_MODEL = "WORKBENCH_EXPLAINER_MODEL"
ENV_API_KEY = "WORKBENCH_EXPLAINER_API_KEY"
STORE_VERSION = 1
EXPLANATIONS_FILENAME = "explanations.json"


ENV_STORE = "WORKBENCH_EXPLANATIONS"


def default_store_path() -> Path:
    """The explanation store the CLI, reports and the app use unless told otherwise: ``$WORKBENCH_EXPLANATIONS``,
    else ``explanations.json`` in the workbench cache."""
    override = os.environ.get(ENV_STORE)
    return Path(override).expanduser() if override else cache_dir() / EXPLANATIONS_FILENAME


# ----------------------------------------------------------------------------- records


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants", use_attribute_docstrings=True)


class ExplainSettings(_Part):
    """How examples are chosen and shown, and how much is generated."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    mode: ContextMode = "conversation"
    """``conversation``: each example is the whole conversation with turns marked; ``window``: the tokens
    within ``window`` of its maximum, no turn markers."""
    window: int = 8
    """Tokens shown either side of the maximum in ``window`` mode."""
    n_explain: int = 10
    """Examples shown to the explainer: the top half by maximum activation, the rest spread over the others."""
    n_score: int = 40
    """Held-out examples per score (detection: half activating, half not; fuzzing: activating items, half
    truly marked, half marked elsewhere); fewer when the capture has fewer."""
    mark_fraction: float = 0.2
    """Tokens at or above this fraction of the example's maximum are marked as activating."""
    max_new_tokens: int = 60
    """Tokens the explainer may write."""
    seed: int = 0
    """Seed of the example samples, the fuzzing decoys and the bootstrap."""

    def check(self) -> ExplainSettings:
        check_number("window", self.window, minimum=1)
        check_number("n_explain", self.n_explain, minimum=1)
        check_number("n_score", self.n_score, minimum=2)
        check_number("mark_fraction", self.mark_fraction, above=0, maximum=1)
        check_number("max_new_tokens", self.max_new_tokens, minimum=1)
        return self


class ExplainerInfo(_Part):
    """Who wrote (or scored) an explanation."""

    kind: str
    """``local`` (a Hugging Face model loaded by the workbench), ``endpoint`` (an OpenAI-compatible chat API)
    or another explainer's name."""
    model: str
    """The model's name (a local model's display name and identity, or the endpoint's model id)."""
    settings: dict[str, Any] = Field(default_factory=dict)
    """Decoding settings (greedy, temperature, the endpoint's base URL; never a key)."""


class ScoredExample(_Part):
    """One held-out example the scorer answered."""

    item_id: str
    label: bool
    """The right answer: active (detection) or truly marked (fuzzing)."""
    p_yes: float
    """The scorer's probability of answering yes."""


class ScoreResult(_Part):
    """One score of an explanation."""

    name: Literal["detection", "fuzzing"]
    balanced_accuracy: Estimate
    """Balanced accuracy of the scorer's answer (yes when P(yes) > 0.5), bootstrap 95% interval, n both sides."""
    auroc: Estimate
    """AUROC of the scorer's P(yes), right answers yes vs no (bootstrap 95% interval)."""
    n_positive: int
    n_negative: int
    prompt_example: str
    """The first scorer prompt, as sent."""
    examples: list[ScoredExample] = Field(default_factory=list)


class Explanation(_Part):
    """An explanation of one feature, with its scores, the prompt and who wrote and scored it."""

    version: int = STORE_VERSION
    model_identity: str
    """The explained model (``workbench.model.loading.model_identity``)."""
    adapter: str | None = None
    """Its LoRA adapter, as the capture names it (None: none)."""
    sae_identity: str
    site: str
    feature: int
    text: str
    """The explanation."""
    settings: ExplainSettings
    explainer: ExplainerInfo
    scorer: ExplainerInfo
    prompt: str
    """The explainer prompt, as sent."""
    example_ids: list[str]
    """Items shown to the explainer (never scored on)."""
    detection: ScoreResult
    fuzzing: ScoreResult
    created: str
    seconds: float = 0.0

    @property
    def mode(self) -> str:
        return self.settings.mode

    def summary(self) -> str:
        return (f"[{self.mode}] {self.text!r} (by {self.explainer.model}): detection balanced accuracy "
                f"{self.detection.balanced_accuracy}, fuzzing {self.fuzzing.balanced_accuracy}")


class ExplanationStore(_Part):
    """The JSON store: every explanation, keyed by model, adapter, SAE, site, feature (and mode and explainer)."""

    version: int = STORE_VERSION
    explanations: list[Explanation] = Field(default_factory=list)

    def find(self, *, site: str, feature: int, model_identity: str | None = None,
             sae_identity: str | None = None) -> list[Explanation]:
        """Explanations of a feature (of this model and SAE when given)."""
        return [e for e in self.explanations if e.site == site and e.feature == feature
                and (model_identity is None or e.model_identity == model_identity)
                and (sae_identity is None or e.sae_identity == sae_identity)]


def _store_key(e: Explanation) -> tuple[Any, ...]:
    return (e.model_identity, e.adapter, e.sae_identity, e.site, e.feature, e.settings.mode, e.explainer.model)


def read_store(path: str | os.PathLike[str] | None = None) -> ExplanationStore:
    """The store at ``path`` (default ``default_store_path()``); empty where there is none yet."""
    path = Path(path) if path is not None else default_store_path()
    if not path.exists():
        return ExplanationStore()
    data = read_user_json(path, "explanation store")
    try:
        return ExplanationStore.model_validate(data)
    except ValueError as error:
        first = str(error).splitlines()
        raise WorkbenchError(f"{path} is not an explanation store: {first[1] if len(first) > 1 else first[0]}; "
                             "give a file written by `explain`") from None


def add_explanations(path: str | os.PathLike[str] | None, new: Sequence[Explanation]) -> ExplanationStore:
    """Add explanations to the store (replacing one of the same key, mode and explainer); atomic write."""
    path = Path(path) if path is not None else default_store_path()
    store = read_store(path)
    replaced = {_store_key(e) for e in new}
    kept = [e for e in store.explanations if _store_key(e) not in replaced]
    store = ExplanationStore(explanations=kept + list(new))
    write_text_atomically(path, store.model_dump_json(indent=1))
    return store


# ----------------------------------------------------------------------------- showing examples


def visible_positions(example: FeatureExample) -> list[int]:
    """Positions of the tokens shown: chat-template tokens (and each turn's header up to its newline) and
    the attention sink are left out."""
    shown, in_header = [], False
    for position, token in enumerate(example.tokens):
        if token in TEMPLATE_TOKENS:
            in_header = token in ("<|im_start|>", "<|start_header_id|>")
            continue
        if in_header:
            if "\n" in token:
                in_header = False
            continue
        if position == 0 and example.values and example.values[0] == 0 and not token.strip():
            continue
        shown.append(position)
    return shown


def activating_positions(example: FeatureExample, mark_fraction: float) -> set[int]:
    """Visible tokens with text where the feature is at or above ``mark_fraction`` of the example's maximum
    (and > 0)."""
    if example.max_value <= 0:
        return set()
    cut = mark_fraction * example.max_value
    return {p for p in visible_positions(example)
            if example.values[p] > 0 and example.values[p] >= cut and example.tokens[p].strip()}


def shown_positions(example: FeatureExample, mode: str, window: int, centre: int | None = None) -> list[int]:
    """The positions a mode shows: all visible ones, or ``window`` visible tokens either side of ``centre``
    (default: the maximum)."""
    visible = visible_positions(example)
    if mode == "conversation" or not visible:
        return visible
    centre = example.max_position if centre is None else centre
    at = min(range(len(visible)), key=lambda i: abs(visible[i] - centre))
    return visible[max(0, at - window): at + window + 1]


def _close_mark(parts: list[str]) -> None:
    """Close an open mark before any whitespace that ends the marked run (``<<.>>\n``, not ``<<.\n>>``)."""
    last = parts[-1] if parts else ""
    stripped = last.rstrip()
    if parts and stripped != last and not last.endswith(MARK_OPEN):
        parts[-1] = stripped
        parts.append(MARK_CLOSE + last[len(stripped):])
    else:
        parts.append(MARK_CLOSE)


def format_example(example: FeatureExample, mode: str, *, window: int = 8, marked: set[int] | None = None,
                   centre: int | None = None) -> str:
    """The example as text: in ``conversation`` mode every turn, each opened by ``[role]``; in ``window``
    mode the tokens around the maximum (or ``centre``) alone. Tokens in ``marked`` are wrapped
    ``<<like this>>`` (runs of marked tokens as one span)."""
    marked = marked or set()
    parts: list[str] = []
    role, open_mark = None, False
    for position in shown_positions(example, mode, window, centre):
        token = example.tokens[position]
        if mode == "conversation" and example.roles[position] != role:
            if open_mark:
                _close_mark(parts)
                open_mark = False
            role = example.roles[position]
            text_so_far = "".join(parts)
            parts.append(("\n" if text_so_far and not text_so_far.endswith("\n") else "") + f"[{role}] ")
            token = token.lstrip("\n")
        is_marked = position in marked
        if is_marked and not open_mark:
            stripped = token.lstrip()
            parts.append(token[: len(token) - len(stripped)] + MARK_OPEN)
            token = stripped
            open_mark = True
        elif not is_marked and open_mark:
            _close_mark(parts)
            open_mark = False
        parts.append(token)
    if open_mark:
        _close_mark(parts)
    text = "".join(parts).strip()
    return text if mode == "conversation" else f"... {text} ..."


# ----------------------------------------------------------------------------- prompts


def explain_prompt(examples: Sequence[FeatureExample], settings: ExplainSettings) -> str:
    """The explainer's prompt: every example shown in the settings' mode with its activating tokens marked."""
    if settings.mode == "conversation":
        how = ("Each example is a whole chat between a system prompt, a user and an assistant; turns are "
               "marked [system], [user] and [assistant].")
    else:
        how = f"Each example is a short window of text ({settings.window} tokens either side of the strongest token)."
    lines = [
        "We are studying one feature inside a language model. Below are examples where the feature is active. "
        f"{how} Tokens where the feature is active are marked {MARK_OPEN}like this{MARK_CLOSE}.",
        "",
    ]
    for index, example in enumerate(examples, 1):
        marked = activating_positions(example, settings.mark_fraction)
        lines += [f"Example {index} (strongest activation {example.max_value:.2f}):",
                  format_example(example, settings.mode, window=settings.window, marked=marked), ""]
    lines.append("In one short sentence, say what the feature responds to, taking the context into account. "
                 "Answer with the sentence only.")
    return "\n".join(lines)


def detection_prompt(explanation: str, text: str) -> str:
    return (f'A feature of a language model is described as: "{explanation}"\n\nText:\n{text}\n\n'
            "Is this feature active anywhere in the text? Answer Yes or No.")


def fuzzing_prompt(explanation: str, text: str) -> str:
    return (f'A feature of a language model is described as: "{explanation}"\n\nIn the text below some tokens are '
            f"marked {MARK_OPEN}like this{MARK_CLOSE}.\n\nText:\n{text}\n\n"
            "Are the marked tokens the ones where this feature is active? Answer Yes or No.")


def clean_explanation(text: str) -> str:
    """The first non-empty line of the explainer's answer, without a leading label or quotes."""
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    for prefix in ("Explanation:", "explanation:", "Answer:"):
        if line.startswith(prefix):
            line = line[len(prefix):].strip()
    return line.strip('"').strip() or "(no explanation)"


# ----------------------------------------------------------------------------- explainers


class Explainer(Protocol):
    """Writes explanations and answers the scorer's yes/no questions."""

    info: ExplainerInfo

    def write(self, prompt: str, max_new_tokens: int) -> str:
        """The reply to one prompt (a user turn)."""

    def p_yes(self, prompts: Sequence[str]) -> list[float]:
        """P(yes) for each yes/no question."""


class LocalExplainer:
    """A model loaded by the workbench (``LoadedModel``): greedy replies; P(yes) from the next-token
    probabilities of ``Yes`` against ``No`` (renormalised over the two)."""

    def __init__(self, model: Any, name: str | None = None, batch_size: int = 8):
        self.model = model
        self.batch_size = batch_size
        self.info = ExplainerInfo(kind="local", model=name or model.identity,
                                  settings={"decoding": "greedy", "identity": model.identity,
                                            "p_yes": "P(Yes) / (P(Yes) + P(No)) at the first answer token"})
        tokenizer = model.tokenizer

        def first_ids(words: Sequence[str]) -> list[int]:
            ids = {tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in words}
            return sorted(i for i in ids if isinstance(i, int))

        self.yes_ids = first_ids(["Yes", " Yes", "yes", " yes"])
        self.no_ids = first_ids(["No", " No", "no", " no"])

    def write(self, prompt: str, max_new_tokens: int) -> str:
        from workbench.model.generation import generate_answers

        return generate_answers(self.model, [[{"role": "user", "content": prompt}]], max_new_tokens=max_new_tokens)[0]

    def p_yes(self, prompts: Sequence[str]) -> list[float]:
        from workbench.model.generation import next_token_log_probs

        log_probs = next_token_log_probs(self.model, [[{"role": "user", "content": p}] for p in prompts],
                                         batch_size=self.batch_size)
        yes = torch.logsumexp(log_probs[:, self.yes_ids], dim=-1)
        no = torch.logsumexp(log_probs[:, self.no_ids], dim=-1)
        return torch.sigmoid(yes - no).tolist()


class EndpointExplainer:
    """An OpenAI-compatible chat completions endpoint (``POST {base_url}/chat/completions``), temperature 0.
    P(yes) is 1 for a reply that starts with yes, 0 for no, 0.5 otherwise."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout: float = 60.0):
        self.base_url, self.model, self.api_key, self.timeout = base_url.rstrip("/"), model, api_key, timeout
        self.info = ExplainerInfo(kind="endpoint", model=model,
                                  settings={"base_url": self.base_url, "temperature": 0,
                                            "p_yes": "1 if the reply starts with yes, 0 with no, else 0.5"})

    @classmethod
    def from_environment(cls) -> EndpointExplainer:
        """From ``WORKBENCH_EXPLAINER_BASE_URL``, ``WORKBENCH_EXPLAINER_MODEL`` and (optional)
        ``WORKBENCH_EXPLAINER_API_KEY``."""
        base_url, model = os.environ.get(ENV_BASE_URL), os.environ.get(ENV_MODEL)
        if not base_url or not model:
            raise WorkbenchError(f"the endpoint explainer needs {ENV_BASE_URL} (e.g. http://localhost:8000/v1) and "
                                 f"{ENV_MODEL} set (and {ENV_API_KEY} if it wants a key); or use --explainer local")
        if not base_url.startswith(("http://", "https://")):
            raise WorkbenchError(f"{ENV_BASE_URL} must start with http:// or https://, not {base_url!r}")
        return cls(base_url, model, os.environ.get(ENV_API_KEY))

    def _chat(self, prompt: str, max_tokens: int) -> str:
        body = json.dumps({"model": self.model, "messages": [{"role": "user", "content": prompt}],
                           "max_tokens": max_tokens, "temperature": 0}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(f"{self.base_url}/chat/completions", data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - the user's URL
                reply = json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as error:
            raise WorkbenchError(f"the explainer endpoint {self.base_url} answered HTTP {error.code}: check "
                                 f"{ENV_MODEL} and {ENV_API_KEY}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise WorkbenchError(f"cannot reach the explainer endpoint {self.base_url}: {reason}; check "
                                 f"{ENV_BASE_URL}") from None
        except json.JSONDecodeError:
            raise WorkbenchError(f"the explainer endpoint {self.base_url} did not answer JSON") from None
        try:
            return str(reply["choices"][0]["message"]["content"] or "")
        except (KeyError, IndexError, TypeError):
            raise WorkbenchError(f"the explainer endpoint {self.base_url} answered without choices[0].message."
                                 "content: is it OpenAI-compatible?") from None

    def write(self, prompt: str, max_new_tokens: int) -> str:
        return self._chat(prompt, max_new_tokens)

    def p_yes(self, prompts: Sequence[str]) -> list[float]:
        answers = [self._chat(p, 3).strip().lower() for p in prompts]
        return [1.0 if a.startswith("yes") else 0.0 if a.startswith("no") else 0.5 for a in answers]


# ----------------------------------------------------------------------------- examples and scores


class ExampleSplit(BaseModel):
    """Items (capture positions) chosen for one feature: to explain from, and held out to score on."""

    explain: list[int]
    active: list[int]
    """Held-out activating items (never shown to the explainer)."""
    inactive: list[int]
    """Items where the feature never fires."""
    fuzzing: list[int] = []
    """Held-out activating items for fuzzing (up to ``n_score``; half are marked truly, half elsewhere)."""


def split_examples(maxima: torch.Tensor, settings: ExplainSettings) -> ExampleSplit:
    """The top ``n_explain // 2`` items and the rest spread evenly over the remaining activating ones to
    explain from; a seeded sample of the other activating items and of non-activating items to score on."""
    rng = random.Random(settings.seed)
    ranked = [int(i) for i in torch.argsort(maxima, descending=True, stable=True) if maxima[i] > 0]
    inactive = [int(i) for i in torch.nonzero(maxima <= 0).flatten()]
    if len(ranked) < 2:
        raise WorkbenchError(f"the feature fires on {len(ranked)} captured item(s): too few to explain and score; "
                             "capture more scenarios or texts (--scenarios, --texts) or pick another feature")
    n_explain = min(settings.n_explain, max(1, len(ranked) // 2))
    n_top = max(1, n_explain // 2)
    chosen = ranked[:n_top]
    rest = ranked[n_top:]
    spread = n_explain - n_top
    if spread and rest:
        step = len(rest) / spread
        chosen += [rest[int(k * step)] for k in range(spread)]
    held = [i for i in ranked if i not in set(chosen)]
    half = settings.n_score // 2
    return ExampleSplit(explain=chosen, active=rng.sample(held, min(half, len(held))),
                        inactive=rng.sample(inactive, min(half, len(inactive))),
                        fuzzing=rng.sample(held, min(settings.n_score, len(held))))


def _score(name: str, labels: Sequence[bool], ids: Sequence[str], prompts: Sequence[str], scorer: Explainer,
           seed: int) -> ScoreResult:
    p = scorer.p_yes(list(prompts)) if prompts else []
    positive = torch.tensor([v for v, label in zip(p, labels) if label], dtype=torch.float64)
    negative = torch.tensor([v for v, label in zip(p, labels) if not label], dtype=torch.float64)
    return ScoreResult(
        name=name, balanced_accuracy=balanced_accuracy_estimate(positive, negative, 0.5, seed=seed),
        auroc=auroc_estimate(positive.float(), negative.float(), seed=seed),
        n_positive=len(positive), n_negative=len(negative), prompt_example=prompts[0] if prompts else "",
        examples=[ScoredExample(item_id=i, label=label, p_yes=round(float(v), 5)) for i, label, v in zip(ids, labels, p)])


def score_explanation(text: str, examples: dict[int, FeatureExample], split: ExampleSplit, scorer: Explainer,
                      settings: ExplainSettings) -> tuple[ScoreResult, ScoreResult]:
    """Detection and fuzzing of an explanation on the held-out items, shown in the settings' mode."""
    rng = random.Random(settings.seed + 1)
    mode, window = settings.mode, settings.window
    # detection: no marks; a non-activating item's window sits at a random visible token
    labels, ids, prompts = [], [], []
    for index in split.active + split.inactive:
        example = examples[index]
        active = index in split.active
        visible = visible_positions(example) or [0]
        centre = example.max_position if active else rng.choice(visible)
        labels.append(active)
        ids.append(example.item_id)
        prompts.append(detection_prompt(text, format_example(example, mode, window=window, centre=centre)))
    detection = _score("detection", labels, ids, prompts, scorer, settings.seed)
    # fuzzing: held-out activating items, half marked where the feature fires, half on as many other shown tokens
    candidates = list(split.fuzzing)
    labels, ids, prompts = [], [], []
    for k, index in enumerate(candidates):
        example = examples[index]
        true_marks = activating_positions(example, settings.mark_fraction)
        shown = shown_positions(example, mode, window)
        true_marks &= set(shown)
        others = [p for p in shown if p not in true_marks and example.values[p] <= 0 and example.tokens[p].strip()]
        correct = k % 2 == 0
        if not correct:
            if not others or not true_marks:
                continue
            marks = set(rng.sample(others, min(len(true_marks), len(others))))
        else:
            marks = true_marks
        labels.append(correct)
        ids.append(example.item_id)
        prompts.append(fuzzing_prompt(text, format_example(example, mode, window=window, marked=marks)))
    fuzzing = _score("fuzzing", labels, ids, prompts, scorer, settings.seed)
    return detection, fuzzing


def explain_feature(capture: Capture, site: str, feature: int, explainer: Explainer, scorer: Explainer,
                    settings: ExplainSettings | None = None) -> Explanation:
    """Explain one feature of a capture in the settings' mode and score the explanation."""
    settings = (settings or ExplainSettings()).check()
    started = time.perf_counter()
    activations = capture.site(site)
    if not 0 <= feature < activations.d_sae:
        from workbench.core.errors import FeatureIndexError

        raise FeatureIndexError(f"feature {feature} is out of range: the SAE at {site} has {activations.d_sae} "
                                f"features (0 to {activations.d_sae - 1})")
    values = activations.feature_values(feature)
    split = split_examples(item_maxima(capture, values), settings)
    examples = {i: item_example(capture, values, i)
                for i in {*split.explain, *split.active, *split.inactive, *split.fuzzing}}
    prompt = explain_prompt([examples[i] for i in split.explain], settings)
    text = clean_explanation(explainer.write(prompt, settings.max_new_tokens))
    detection, fuzzing = score_explanation(text, examples, split, scorer, settings)
    sae = next((s for s in capture.meta.saes if s.site == site), None)
    return Explanation(
        model_identity=capture.meta.model_identity, adapter=capture.meta.model_spec.get("adapter"),
        sae_identity=sae.identity if sae else "", site=site, feature=feature, text=text, settings=settings,
        explainer=explainer.info, scorer=scorer.info, prompt=prompt,
        example_ids=[examples[i].item_id for i in split.explain], detection=detection, fuzzing=fuzzing,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"), seconds=time.perf_counter() - started)


__all__ = [
    "ENV_API_KEY", "ENV_BASE_URL", "ENV_MODEL", "EndpointExplainer", "ExampleSplit", "ExplainSettings", "Explainer",
    "ExplainerInfo", "Explanation", "ExplanationStore", "LocalExplainer", "MODES", "ScoreResult", "ScoredExample",
    "activating_positions", "add_explanations", "default_store_path", "explain_feature", "explain_prompt",
    "format_example", "read_store", "score_explanation", "split_examples", "visible_positions",
]
