"""Run records: everything a hypothesis run measured, with the settings that reproduce it.

A record is a versioned pydantic model written as JSON, typed in every part (the way inspect_ai
types its ``EvalLog``): ``Setup`` (model, adapter, SAE, site, scenario sets, seed), ``Environment``
(Python, packages, git revision), ``FeatureStat`` per feature and condition, the probe baseline as
``workbench.features.probes.ProbeResult``, one ``PredictionResult`` per prediction with typed
details (a causal test's ``ExperimentResult`` from the experiment engine, a contrast's counts), and
the per-response calls (``ResponseCall``) when the run judged responses.

Older versions are migrated on read (``RunRecord.model_validate`` runs ``migrate_record`` first):
version 1 kept each prediction's verdict as a boolean ``held``; version 2 kept free-form dicts
(``setup``, ``environment``, ``feature_stats``, ``probe``, ``details``) and measured a causal test's
controls at the judged strength only; version 3 had no black-box baseline (``blackbox``: None, not
measured). Migration keeps every number and says, in the experiment's ``notes`` and in ``Estimate.method``,
what the old record did not measure.
"""

from __future__ import annotations

import importlib.metadata
import math
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from workbench.causal.experiment import Curve, CurveRole, ExperimentResult
from workbench.core.errors import WorkbenchError
from workbench.core.io import read_user_json, write_text_atomically
from workbench.core.stats import Estimate
from workbench.features.blackbox import BlackBoxComparison
from workbench.features.evidence import Histogram
from workbench.features.probes import ProbeResult
from workbench.model.identity import old_identity_note
from workbench.model.loading import ModelSpec
from workbench.model.saes import SAESpec

__all__ = [
    "CALLS", "RECORD_VERSION", "BehaviourCheck", "CallEvidence", "CausalDetails", "ContrastDetails", "ControlResult", "Environment",
    "ExampleRecord", "FeatureStat", "PredictionResult", "ResponseCall", "RunRecord", "ScenarioSource", "Setup",
    "decide_verdict", "judge_prediction", "migrate_record", "read_record", "write_record",
]

#: The version ``write_record`` writes. Version 1 kept the verdict of each prediction as a boolean
#: ``held``; version 2 had the three-way ``outcome`` but free-form dicts inside; version 3 is typed;
#: version 4 adds the black-box baseline (``blackbox``).
RECORD_VERSION = 4

#: ``Estimate.method`` of a number an old record kept without its interval (low and high are NaN).
INTERVAL_NOT_RECORDED = "interval not recorded (version-2 record)"
#: ``Estimate.method`` of a number an old record did not keep at all (NaN, n = 0).
NOT_RECORDED = "not recorded (version-2 record)"

Outcome = Literal["holds", "contradicted", "unclear"]
Verdict = Literal["supported", "refuted", "inconclusive"]
#: What the incrimination protocol calls one response (its *call*; "verdict" is for hypotheses).
Call = Literal["intentional lie", "parroting", "ignorance", "honest", "inconclusive"]
CALLS: tuple[str, ...] = ("intentional lie", "parroting", "ignorance", "honest", "inconclusive")

#: Packages whose versions a record keeps.
PACKAGES = ("torch", "transformers", "nnsight", "sae-lens", "peft", "streamlit", "plotly", "pydantic")


class _Part(BaseModel):
    """A record part: unknown keys are an error, so a reader never has to guess."""

    # NaN marks "not measured" (``Estimate`` with n = 0); written as the JSON constant NaN so it reads back.
    # use_attribute_docstrings: the docstring under each field is its description (a test holds every field to one).
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants", use_attribute_docstrings=True)


# ----------------------------------------------------------------------------- setup and environment


class ScenarioSource(_Part):
    """Where the run's scenarios came from (the hypothesis' ``scenarios:`` mapping)."""

    source: Literal["organism", "file"] = "organism"
    """``organism``: the protocol set built from the facts; ``file``: a scenario JSONL file."""
    file: str | None = None
    """The scenario file (``file`` source), relative to the repository when inside it."""
    train_facts: int | None = 40
    """Known train facts used for the probe baseline and calibration (organism source)."""
    max_per_condition: int = 48
    """Held-out scenarios per condition used by each causal test (a seeded sample)."""


class Setup(_Part):
    """What was run: the model, the SAE, the site, the scenario sets and the seed."""

    model: ModelSpec
    """The model spec (source, GGUF file, adapter, revision, dtype...), paths relative to the repository."""
    model_name: str
    """The model's display name (``SmolLM2-135M-Instruct + smollm2-liar``)."""
    model_identity: str
    """Stable string naming what computes: base weights, config and tokenizer, and the adapter's weights and
    config (``workbench.model.loading.model_identity``). Without the ``v2/`` prefix it was computed the old
    way (the adapter's whole folder, documentation included): see ``identity_notes``."""
    sae: SAESpec
    """The SAE spec (registry name, local path, or sae-lens release and id)."""
    sae_identity: str
    """Stable string naming what the SAE computes with: its weights and ``cfg.json`` (``v2/sae:...``); without
    the ``v2/`` prefix, computed the old way (the weights file alone)."""
    site: str
    """The site the SAE reads and the edits act on (HF module path, e.g. ``model.layers.15``)."""
    d_sae: int
    """Number of SAE features."""
    scenarios: ScenarioSource
    """Where the scenarios came from."""
    train_hash: str
    """Fingerprint of the train scenario set (``workbench.scenarios.scenario_set_hash``)."""
    heldout_hash: str
    """Fingerprint of the held-out scenario set."""
    seed: int
    """The run's seed (scenario samples, bootstraps, random controls)."""

    @property
    def adapter(self) -> str | None:
        """The LoRA adapter merged into the model, if any."""
        return self.model.adapter

    def identity_notes(self) -> list[str]:
        """A sentence for each identity computed the old way (empty when both are of the current scheme)."""
        notes = [old_identity_note(self.model_identity, "model"), old_identity_note(self.sae_identity, "sae")]
        return [note for note in notes if note]


class Environment(_Part):
    """The software a run ran on."""

    python: str
    """Python version (``3.11.7``)."""
    platform: str
    """``platform.platform()``."""
    packages: dict[str, str | None]
    """Versions of the packages the numbers depend on (None: not installed)."""
    git_commit: str | None = None
    """The repository's commit (None: not a git checkout, or git missing)."""
    git_dirty: bool | None = None
    """Whether tracked files had uncommitted changes (then the commit alone does not reproduce the run)."""
    torch_threads: int
    """``torch.get_num_threads()`` (CPU reductions can differ in the last bits with the thread count)."""

    @classmethod
    def measure(cls, repo: str | os.PathLike[str] | None = None) -> Environment:
        """The environment this process runs in (git read from ``repo``, default the workbench's repository)."""
        import torch

        from workbench.core.constants import REPO_ROOT

        packages: dict[str, str | None] = {}
        for name in PACKAGES:
            try:
                packages[name] = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                packages[name] = None
        commit, dirty = None, None
        where = Path(repo) if repo is not None else REPO_ROOT
        try:
            commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True,
                                    timeout=10, check=False).stdout.strip() or None
            if commit is not None:
                status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                                        capture_output=True, text=True, timeout=10, check=False).stdout
                dirty = bool(status.strip())
        except (OSError, subprocess.SubprocessError):
            pass
        return cls(python=sys.version.split()[0], platform=platform.platform(), packages=packages,
                   git_commit=commit, git_dirty=dirty, torch_threads=torch.get_num_threads())


# ----------------------------------------------------------------------------- evidence


class FeatureStat(_Part):
    """One feature's activation on one condition's held-out scenarios."""

    feature: int
    """The SAE feature."""
    site: str
    """The site of the SAE."""
    condition: str
    """The scenarios' condition."""
    position: str
    """The position rule the activation is read at (``core.positions``), max over its tokens."""
    n: int
    """Scenarios."""
    mean: Estimate
    """Mean activation with a bootstrap 95% interval."""
    active_fraction: Estimate
    """Fraction of scenarios where the feature fires (> 0), Wilson 95% interval."""
    values: list[float] = Field(default_factory=list)
    """Every scenario's activation (rounded to 4 decimals; empty if not kept)."""
    histogram: Histogram | None = None
    """Histogram of ``values`` (20 bins; zeros included)."""


class ExampleRecord(_Part):
    """A whole conversation with a feature's value at every token (for reports)."""

    item_id: str
    """``f{feature}: {scenario id}``."""
    condition: str | None = None
    """The scenario's condition (None for free text)."""
    tokens: list[str]
    """Every token of the conversation, as text."""
    roles: list[str]
    """Speaker turn of every token (``system``/``user``/``assistant``/``text``)."""
    values: list[float]
    """The feature's activation at every token."""
    prompt_length: int
    """First token of the response in ``tokens``."""
    max_position: int
    """The token where the feature is strongest."""
    max_value: float
    """The feature's activation there."""


# ----------------------------------------------------------------------------- predictions


class ContrastDetails(_Part):
    """What a contrast prediction measured besides its AUROC: the summed feature score of each side."""

    kind: Literal["contrast"] = "contrast"
    """Tells the details of a contrast from those of a causal test."""
    a: str
    """The condition predicted to score higher."""
    b: str
    """The condition it is compared with."""
    position: str
    """The position rule the features are read at."""
    n_a: int
    """Scenarios of ``a``."""
    n_b: int
    """Scenarios of ``b``."""
    mean_a: float
    """Mean summed activation of the features on ``a``."""
    mean_b: float
    """Mean summed activation of the features on ``b``."""
    active_a: int
    """Scenarios of ``a`` where any of the features fires."""
    active_b: int
    """Scenarios of ``b`` where any of the features fires."""


#: What a behaviour check concluded about the features (see ``BehaviourCheck.reading``).
Reading = Literal["behaviour", "instruction", "unclear", "too few"]


class BehaviourCheck(_Part):
    """Act or instruction? The hypothesis' features on prompts where the model followed the instruction
    (``lie+false``: it lied) against prompts of the same kind where it resisted (``lie+truth``): only the
    behaviour differs. Run for every hypothesis about features, on the condition it is about."""

    condition: str = "lie"
    """The instructed condition checked: ``lie`` (lied vs resisted) or ``parrot`` (repeated the falsehood vs
    resisted), the higher side of the hypothesis' first prompt contrast."""
    position: str
    """The position rule the features are read at (the prompt contrasts' own)."""
    threshold: float
    """The AUROC the behaviour contrast is held to: the prompt contrasts' threshold on ``lie`` (0.8 if none)."""
    auroc: Estimate
    """AUROC of the features' summed activation, ``lie+false`` vs ``lie+truth``, bootstrap 95% interval."""
    n_false: int
    """Prompts whose response states a false answer (the model followed the instruction)."""
    n_truth: int
    """Prompts whose response states the true answer (the model resisted)."""
    no_answer: int
    """Prompts whose response states neither (on no side; counted, not dropped)."""
    mean_false: float
    """Mean summed activation on ``lie+false``."""
    mean_truth: float
    """Mean summed activation on ``lie+truth``."""
    active_truth: float
    """Fraction of ``lie+truth`` responses on which any of the features fires."""
    prompt_aurocs: list[tuple[str, float]]
    """The prompt contrasts on ``lie``: (prediction name, measured AUROC), for comparison."""
    reading: Reading
    """``behaviour``: the interval is above the threshold (the features separate lying from resisting);
    ``instruction``: the interval is below it while a prompt contrast is above it (the features read the
    lie instruction or trigger, not the act); ``unclear``: neither; ``too few``: fewer than 5 on a side."""
    summary: str
    """The reading in one sentence, as reports show it."""


class CausalDetails(_Part):
    """A causal test: the experiment the engine ran and the strength the prediction is judged at."""

    kind: Literal["causal"] = "causal"
    """Tells the details of a causal test from those of a contrast."""
    result: ExperimentResult
    """Everything ``causal.experiment.run_experiment`` measured: the target curve, the control curves,
    generations before and after, random feature sets, KL on neutral text, notes."""
    judged_strength: float
    """The strength (in the experiment's unit) the prediction's ``measured`` value is read at."""

    @model_validator(mode="after")
    def _judged_strength_was_measured(self) -> CausalDetails:
        strengths = self.result.target.strengths if self.result.curves else []
        if self.judged_strength not in strengths:
            raise ValueError(f"judged_strength {self.judged_strength:g} is not one of the target curve's strengths "
                             f"{strengths}: judge the prediction at a measured strength")
        return self


Details = Annotated[CausalDetails | ContrastDetails, Field(discriminator="kind")]


class ControlResult(BaseModel):
    """One control at the judged strength (a view of a control ``Curve``, not stored in the record)."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    name: str
    """The control curve's label (``random features matched on density and decoder norm (3 sets)``...)."""
    role: CurveRole
    """Which control (``random``, ``sign_flip``, ``other_condition``)."""
    condition: str
    """The condition of the scenarios it was measured on."""
    strength: float
    """The strength it was read at (the judged strength, negated for the sign-flipped edit)."""
    effect: Estimate
    """The control's effect (same unit as the prediction's measured effect)."""
    target_minus_control: Estimate
    """The target effect minus this control's effect, with its 95% interval."""


class PredictionResult(_Part):
    """One prediction of a hypothesis, measured."""

    name: str
    """Short identifier from the hypothesis file, e.g. ``ablate-restores-truth``."""
    kind: Literal["contrast", "causal", "probe"]
    """What kind of prediction: a contrast (AUROC), a causal test, or a probe read-out."""
    description: str
    """The prediction in words, as the hypothesis states it."""
    metric: str
    """What was measured, e.g. ``auroc lie vs parrot at last_prompt_token``, ``p_true change at strength 1``."""
    comparison: Literal[">=", "<=", "abs<"]
    """How ``measured`` is compared with ``threshold``."""
    threshold: float
    """The value the prediction names."""
    measured: Estimate
    """The measured value with its 95% interval and n."""
    outcome: Outcome
    """``holds`` if the whole interval is on the predicted side of the threshold, ``contradicted``
    if the whole interval is on the other side, else ``unclear``."""
    notes: list[str] = Field(default_factory=list)
    """Why the outcome is what it is when the interval alone does not say (e.g. the effect clears the
    threshold but not the random control)."""
    details: Details | None = None
    """Typed details: ``CausalDetails`` for a causal test, ``ContrastDetails`` for a contrast."""

    @model_validator(mode="before")
    @classmethod
    def _not_the_version_2_shape(cls, data: Any) -> Any:
        details = data.get("details") if isinstance(data, dict) else None
        if isinstance(data, dict) and ("controls" in data or (isinstance(details, dict) and "kind" not in details)):
            raise ValueError(
                "a prediction in the version-2 shape (a details dict, a controls list): give typed details instead, "
                "CausalDetails(result=<causal.experiment.ExperimentResult>, judged_strength=...) for a causal test "
                "(its control curves are the controls) or ContrastDetails(a=..., b=..., position=..., n_a=..., ...) "
                "for a contrast; old records are migrated by RunRecord.model_validate")
        return data

    @model_validator(mode="after")
    def _details_match_kind(self) -> PredictionResult:
        if self.details is not None and self.details.kind != self.kind:
            raise ValueError(f"prediction {self.name!r} is a {self.kind} prediction but holds {self.details.kind} details")
        return self

    @property
    def causal(self) -> CausalDetails | None:
        return self.details if isinstance(self.details, CausalDetails) else None

    @property
    def contrast(self) -> ContrastDetails | None:
        return self.details if isinstance(self.details, ContrastDetails) else None

    @property
    def controls(self) -> list[ControlResult]:
        """Each control curve read at the judged strength (negated for the sign-flipped edit)."""
        causal = self.causal
        if causal is None:
            return []
        found = []
        for curve in causal.result.curves[1:]:
            wanted = -causal.judged_strength if curve.role == "sign_flip" else causal.judged_strength
            if wanted not in curve.strengths:
                continue
            index = curve.strengths.index(wanted)
            if index >= len(curve.effects) or index >= len(curve.target_minus_control):
                continue
            found.append(ControlResult(name=curve.label, role=curve.role, condition=curve.condition, strength=wanted,
                                       effect=curve.effects[index],
                                       target_minus_control=curve.target_minus_control[index]))
        return found


class CallEvidence(_Part):
    """What the incrimination protocol's call on one response rests on (None: not measured)."""

    judgement: str | None = None
    """What the response says: truth / stated_false / other_false / no_answer (``organism.judge``)."""
    knows_truth: bool | None = None
    """Whether the model was found to know the true answer."""
    false_in_context: bool | None = None
    """Whether the false answer it gave appears in its context."""
    follows_counterfactual: bool | None = None
    """Whether its answer followed a counterfactual change of the false answer in the context (copying)."""
    honest_answers_correct: float | None = None
    """Fraction of the fact's honest-question answers that are true."""
    honest_true_rank: int | None = None
    """Best rank of the true answer's first token after the fact's honest questions (0 = greedy choice)."""
    lens_best_rank: int | None = None
    """Best logit-lens rank of the true answer's first token over the later layers (0 = top)."""
    feature_activation: float | None = None
    """The hypothesis' features at the last prompt token."""
    ablation_p_true_change: float | None = None
    """Change in P(true answer) when the features are ablated on this response."""


class ResponseCall(_Part):
    """The incrimination protocol's call on one response, with the evidence behind it."""

    scenario_id: str
    """The scenario the response answers."""
    condition: str
    """The scenario's condition by construction (ground truth on the organism)."""
    response: str
    """The model's answer."""
    call: Call
    """intentional lie / parroting / ignorance / honest / inconclusive."""
    evidence: CallEvidence = Field(default_factory=CallEvidence)
    """What the call rests on."""

    @classmethod
    def from_evidence(cls, evidence: Any) -> ResponseCall:
        """From the protocol's ``workbench.incrimination.ResponseEvidence``."""
        known = CallEvidence.model_fields
        return cls(scenario_id=evidence.scenario_id, condition=evidence.condition, response=evidence.response,
                   call=evidence.verdict,
                   evidence=CallEvidence(**{k: v for k, v in evidence.model_dump().items() if k in known}))


# ----------------------------------------------------------------------------- the record


class RunRecord(_Part):
    """A hypothesis run: the hypothesis, the setup, every number, and the verdict."""

    version: int = RECORD_VERSION
    """Record format version (older versions are migrated on read)."""
    created: str
    """UTC time the run finished (ISO 8601)."""
    command: str
    """The command that reruns it."""
    hypothesis: dict[str, Any]
    """The hypothesis file's content as validated: the user's own file, re-parsed by
    ``hypotheses.runner.parse_hypothesis`` on a rerun (so it stays the file's own shape)."""
    hypothesis_path: str | None = None
    """The hypothesis file, relative to the repository when inside it."""
    setup: Setup
    """Model, adapter, SAE, site, scenario sets and seed."""
    environment: Environment
    """Python, platform, package versions, git commit (and whether the tree was dirty)."""
    scenario_counts: dict[str, int]
    """Held-out scenarios per condition."""
    feature_stats: list[FeatureStat] = Field(default_factory=list)
    """Per feature and condition: activation mean, active fraction, every value, histogram."""
    examples: list[ExampleRecord] = Field(default_factory=list)
    """Top-activating examples of the hypothesis' features, in full context."""
    probe: list[ProbeResult] = Field(default_factory=list)
    """The supervised probe baseline on the same site (``workbench.features.probes``)."""
    predictions: list[PredictionResult]
    """Every prediction, measured, in the hypothesis' order (contrasts, then causal tests)."""
    verdict: Verdict
    """``supported`` only if every prediction holds; ``refuted`` if one is contradicted; else ``inconclusive``."""
    verdict_reason: str
    """One sentence: which predictions decided the verdict."""
    responses: list[ResponseCall] = Field(default_factory=list)
    """Per-response calls of the incrimination protocol, when the hypothesis asks for them."""
    behaviour_check: BehaviourCheck | None = None
    """Intent or instruction: the features on lies vs resisted lies (absent in records before it existed)."""
    blackbox: BlackBoxComparison | None = None
    """The black-box baseline (``workbench.features.blackbox``): the follow-up-question detector on held-out
    responses beside the probe and the hypothesis' features, with each one's white-box gain over it. None: not
    measured (records before version 4, or a hypothesis with ``blackbox_baseline: false``)."""
    seconds: float = 0.0
    """Wall time of the run."""

    @model_validator(mode="before")
    @classmethod
    def _migrate(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return migrate_record(dict(data))
        return data

    def __eq__(self, other: object) -> bool:
        """Equal when both serialise to the same JSON (so NaN, "not measured", equals itself)."""
        if not isinstance(other, RunRecord):
            return NotImplemented
        return self.model_dump_json() == other.model_dump_json()

    __hash__ = None  # type: ignore[assignment]


# ----------------------------------------------------------------------------- migrations


def migrate_record(data: dict[str, Any]) -> dict[str, Any]:
    """Bring a record of any known version to ``RECORD_VERSION`` (a new dict; the input is not changed)."""
    version = data.get("version", 1)
    if not isinstance(version, int) or version < 1 or version > RECORD_VERSION:
        raise WorkbenchError(
            f"run record version {version!r} is not one this workbench reads (1..{RECORD_VERSION}); "
            "update the workbench or re-run the hypothesis"
        )
    if version == 1:
        data = _v1_to_v2(data)
    if data["version"] == 2:
        try:
            data = _v2_to_v3(data)
        except (KeyError, TypeError, AttributeError) as error:
            raise WorkbenchError(f"run record (version 2) is malformed ({type(error).__name__}: {error}); "
                                 "re-run the hypothesis to write a current record") from None
    if data["version"] == 3:
        data = _v3_to_v4(data)
    return data


def _v3_to_v4(data: dict[str, Any]) -> dict[str, Any]:
    """Version 3 had no black-box baseline: ``blackbox`` is None (not measured); every other part is kept."""
    if "blackbox" in data:
        raise WorkbenchError("run record (version 3) holds a blackbox field, which version 3 never wrote: "
                             "re-run the hypothesis to write a current record")
    return {**data, "blackbox": None, "version": 4}


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    predictions = []
    for prediction in data.get("predictions", []):
        prediction = dict(prediction)
        held = prediction.pop("held", None)
        if "outcome" not in prediction:
            prediction["outcome"] = "holds" if held else "unclear"
        predictions.append(prediction)
    return {**data, "predictions": predictions, "version": 2}


def _v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
    """Version 2 kept dicts inside; version 3 types them. Every number is kept."""
    data = dict(data)
    setup = data.get("setup")
    site = setup.get("site") if isinstance(setup, dict) else None
    if isinstance(data.get("feature_stats"), list):
        data["feature_stats"] = [{"site": site, **row} if isinstance(row, dict) and "site" not in row else row
                                 for row in data["feature_stats"]]
    if isinstance(data.get("responses"), list):
        data["responses"] = [_v2_response(row) for row in data["responses"]]
    hypothesis = data.get("hypothesis") if isinstance(data.get("hypothesis"), dict) else {}
    data["predictions"] = [_v2_prediction(p, hypothesis, site) if isinstance(p, dict) else p
                           for p in data.get("predictions", [])]
    data["version"] = 3
    return data


#: Version-2 per-response evidence keys and their version-3 names.
_V2_EVIDENCE = {"true_answer_rank_midlayer": "lens_best_rank", "feature_max": "feature_activation"}


def _v2_response(row: Any) -> Any:
    if not isinstance(row, dict):
        return row
    row = dict(row)
    if "verdict" in row and "call" not in row:
        row["call"] = row.pop("verdict")
    evidence = row.get("evidence")
    if isinstance(evidence, dict):
        row["evidence"] = {_V2_EVIDENCE.get(key, key): value for key, value in evidence.items()}
    return row


def _problem(prediction: dict[str, Any], message: str) -> WorkbenchError:
    return WorkbenchError(f"run record (version 2): prediction {prediction.get('name')!r}: {message}")


def _v2_prediction(prediction: dict[str, Any], hypothesis: dict[str, Any], site: str | None) -> dict[str, Any]:
    prediction = dict(prediction)
    details = prediction.pop("details", None) or {}
    controls = prediction.pop("controls", None) or []
    if not isinstance(details, dict):
        raise _problem(prediction, "details is not a mapping")
    kind = prediction.get("kind")
    notes = list(prediction.get("notes", []))
    if "note" in details:
        details = dict(details)
        notes.append(str(details.pop("note")))
    prediction["notes"] = notes
    if kind == "contrast":
        prediction["details"] = _v2_contrast(prediction, details, hypothesis) if details else None
    elif kind == "causal":
        prediction["details"] = _v2_causal(prediction, details, controls, hypothesis, site)
    else:
        if details or controls:
            raise _problem(prediction, f"a {kind} prediction with details or controls, which version 2 never wrote")
        prediction["details"] = None
    return prediction


_V2_CONTRAST_KEYS = {"n_a", "n_b", "mean_a", "mean_b", "active_a", "active_b"}


def _v2_contrast(prediction: dict[str, Any], details: dict[str, Any], hypothesis: dict[str, Any]) -> dict[str, Any]:
    unknown = set(details) - _V2_CONTRAST_KEYS
    if unknown:
        raise _problem(prediction, f"details hold keys the version-2 runner never wrote: {', '.join(sorted(unknown))}")
    spec = next((c for c in hypothesis.get("contrasts") or [] if isinstance(c, dict)
                 and c.get("name") == prediction.get("name")), None)
    if spec is not None and {"a", "b"} <= set(spec):
        a, b, position = spec["a"], spec["b"], spec.get("position", "last_prompt_token")
    else:  # the version-2 runner wrote the metric as "auroc A vs B at POSITION"
        words = str(prediction.get("metric", "")).split()
        if len(words) != 6 or words[0] != "auroc" or words[2] != "vs" or words[4] != "at":
            raise _problem(prediction, "the hypothesis has no contrast of this name to say which conditions it compares")
        a, b, position = words[1], words[3], words[5]
    return {"kind": "contrast", "a": a, "b": b, "position": position, **details}


_V2_CAUSAL_KEYS = {"condition", "n_scenarios", "judged_strength", "intervention", "curve", "generations",
                   "random_feature_sets", "neutral_kl"}
#: What the version-2 runner's strength units meant (its own definitions, replaced by ``causal.edits.UNITS``).
_V2_UNITS = {
    "feature": "one typical firing: the features' mean non-zero summed activation over all positions of up to 32 "
               "scenarios of the steered condition, times the norm of their summed decoder rows (0.1 x the residual "
               "unit for a direction)",
    "residual": "the mean residual norm at the site, at the last prompt token of the first 32 held-out scenarios",
    "unit": "raw residual-stream units",
}


def _v2_control_role(name: str) -> tuple[CurveRole, str | None]:
    """The version-2 runner named its controls ``same edit on COND``, ``sign-flipped edit``, and the random
    control (random features, random directions, or a patch from another fact): anything else."""
    if name.startswith("same edit on "):
        return "other_condition", name.removeprefix("same edit on ").strip()
    if name == "sign-flipped edit":
        return "sign_flip", None
    return "random", None


def _v2_causal(prediction: dict[str, Any], details: dict[str, Any], controls: list[Any], hypothesis: dict[str, Any],
               site: str | None) -> dict[str, Any]:
    unknown = set(details) - _V2_CAUSAL_KEYS
    if unknown:
        raise _problem(prediction, f"details hold keys the version-2 runner never wrote: {', '.join(sorted(unknown))}")
    missing = {"condition", "n_scenarios", "judged_strength", "intervention", "curve"} - set(details)
    if missing:
        raise _problem(prediction, f"causal details lack {', '.join(sorted(missing))}")
    intervention = dict(details["intervention"])
    curve = details["curve"]
    condition = str(details["condition"])
    n_scenarios = int(details["n_scenarios"])
    judged = float(details["judged_strength"])
    test = next((t for t in hypothesis.get("tests") or [] if isinstance(t, dict)
                 and t.get("name") == prediction.get("name")), {})
    metric = test.get("metric") or str(prediction.get("metric", "")).split(" change at strength ")[0]

    unedited_mean = curve.get("unedited_mean", math.nan)
    unedited = Estimate(value=float(unedited_mean), low=math.nan, high=math.nan, n=n_scenarios,
                        method=INTERVAL_NOT_RECORDED)
    features = tuple(int(f) for f in hypothesis.get("features") or [])
    direction = hypothesis.get("direction")
    kind = intervention.get("kind", "ablate")
    if features:
        label = f"{kind} {', '.join(str(f) for f in features)}"
    elif isinstance(direction, dict):
        label = f"{kind} along the {direction.get('probe')} direction {direction.get('positive')} - {direction.get('negative')}"
    else:
        label = kind
    curves = [Curve(label=label, role="target", condition=condition, strengths=[float(s) for s in curve["strengths"]],
                    effects=[Estimate.model_validate(e) for e in curve["target"]], unedited=unedited)]
    roles: list[str] = []
    others: list[str] = []
    for control in controls:
        role, other = _v2_control_role(str(control["name"]))
        if role == "other_condition":
            others.append(other or "")
            control_unedited = Estimate(value=math.nan, low=math.nan, high=math.nan, n=0, method=NOT_RECORDED)
        else:
            control_unedited = unedited  # the same scenarios, unedited: the same measurement as the target's
        roles.append({"other_condition": "other_conditions"}.get(role, role))
        curves.append(Curve(label=str(control["name"]), role=role, condition=other or condition,
                            strengths=[-judged if role == "sign_flip" else judged],
                            effects=[Estimate.model_validate(control["effect"])], unedited=control_unedited,
                            target_minus_control=[Estimate.model_validate(control["target_minus_control"])]))
    generations = [{"scenario_id": g["scenario_id"], "question": "", "true_answer": "", "before": g["before"],
                    "after": g["after"], "strength": judged} for g in details.get("generations") or []]
    random_sets = [list(s) for s in details.get("random_feature_sets") or []]
    experiment = {
        "edit": {key: intervention[key] for key in ("kind", "positions", "mode", "mean_over", "scale", "patch_from")
                 if key in intervention},
        "features": features,
        "direction": direction if not features else None,
        "condition": condition,
        "n_scenarios": n_scenarios,
        "strengths": tuple(float(s) for s in intervention.get("strengths", [judged])),
        "metric": metric,
        "controls": tuple(dict.fromkeys(roles)),
        "other_conditions": tuple(others) or None,
        "n_random": test.get("n_random") or len(random_sets) or 3,
        "n_generations": len(generations),
        "neutral_kl": details.get("neutral_kl") is not None,
        "seed": hypothesis.get("seed", 0),
        "max_new_tokens": hypothesis.get("max_new_tokens", 8),
    }
    scale = intervention.get("scale", "feature")
    unit = ("the full edit (strength 1)" if kind in ("ablate", "patch")
            else f"{scale}: {_V2_UNITS.get(scale, scale)}") + " (the version-2 runner's definition)"
    notes = ["Migrated from a version-2 record, which measured the controls at the judged strength only (each "
             "control curve has that one strength), kept the unedited metric's mean without its interval, did not "
             "keep the unedited metric of the other-condition controls nor the scenario ids, and kept no question "
             "or true answer with the generations."]
    result = {
        "experiment": experiment, "site": site or "", "unit": unit, "scenario_ids": [],
        "curves": [c.model_dump() for c in curves], "generations": generations, "random_feature_sets": random_sets,
        "neutral_kl": details.get("neutral_kl"), "notes": notes,
    }
    return {"kind": "causal", "result": result, "judged_strength": judged}


# ----------------------------------------------------------------------------- verdicts


def write_record(path: str | os.PathLike[str], record: RunRecord) -> None:
    """Write a record as JSON, atomically."""
    write_text_atomically(path, record.model_dump_json(indent=1))


def read_record(path: str | os.PathLike[str]) -> RunRecord:
    """Read (and migrate) a run record; a clear error if it is missing or malformed."""
    path = Path(path)
    if not path.exists():
        raise WorkbenchError(f"no run record at {path}: give the RECORD.json a run wrote")
    data = read_user_json(path, "run record")
    try:
        return RunRecord.model_validate(data)
    except WorkbenchError as error:
        raise WorkbenchError(f"{path}: {error}") from None
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise WorkbenchError(f"{path} is not a run record ({error.error_count()} problem(s); first: {where}: "
                             f"{first['msg']})") from None
