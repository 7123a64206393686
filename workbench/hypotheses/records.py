"""Run records: everything a hypothesis run measured, with the settings that reproduce it.

A record is a versioned pydantic model written as JSON. Older versions are migrated on read
(``RunRecord.model_validate`` runs ``_migrate`` first), so a record written by an earlier
release still loads, reports and reruns.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from workbench.core.errors import WorkbenchError
from workbench.core.io import write_text_atomically
from workbench.core.stats import Estimate

#: The version ``write_record`` writes. Version 1 kept the verdict of each prediction as a
#: boolean ``held`` and had no ``outcome``; version 2 has the three-way ``outcome``.
RECORD_VERSION = 2

Outcome = Literal["holds", "contradicted", "unclear"]
Verdict = Literal["supported", "refuted", "inconclusive"]


class ControlResult(BaseModel):
    """One control of a causal test: the same measurement under a control edit."""

    name: str
    """e.g. ``random features (matched density and norm)``, ``sign-flipped``, ``on parrot``."""
    effect: Estimate
    """The control's effect (same unit as the prediction's measured effect)."""
    target_minus_control: Estimate
    """The target effect minus this control's effect, with a bootstrap 95% interval."""


class PredictionResult(BaseModel):
    """One prediction of a hypothesis, measured."""

    name: str
    """Short identifier from the hypothesis file, e.g. ``ablate-restores-truth``."""
    kind: Literal["contrast", "causal", "probe"]
    description: str
    """The prediction in words, as the hypothesis states it."""
    metric: str
    """What was measured, e.g. ``auroc``, ``p_true_change``, ``lie_rate``."""
    comparison: Literal[">=", "<=", "abs<"]
    threshold: float
    measured: Estimate
    """The measured value with its 95% interval and n."""
    outcome: Outcome
    """``holds`` if the whole interval is on the predicted side of the threshold, ``contradicted``
    if the whole interval is on the other side, else ``unclear``."""
    controls: list[ControlResult] = Field(default_factory=list)
    details: dict[str, Any] = Field(default_factory=dict)
    """Anything else the test measured (curves over strengths, generations before/after)."""


class ResponseVerdict(BaseModel):
    """The incrimination protocol's verdict on one response, with the evidence behind it."""

    scenario_id: str
    condition: str
    """The scenario's condition by construction (ground truth on the organism)."""
    response: str
    verdict: Literal["intentional lie", "parroting", "ignorance", "honest", "inconclusive"]
    evidence: dict[str, Any] = Field(default_factory=dict)


class ExampleRecord(BaseModel):
    """A whole conversation with per-token feature values (for reports)."""

    item_id: str
    condition: str | None = None
    tokens: list[str]
    roles: list[str]
    values: list[float]
    prompt_length: int
    max_position: int
    max_value: float


class RunRecord(BaseModel):
    """A hypothesis run: the hypothesis, the setup, every number, and the verdict."""

    model_config = ConfigDict(extra="forbid")

    version: int = RECORD_VERSION
    """Record format version (migrated on read)."""
    created: str
    """UTC time the run finished (ISO 8601)."""
    command: str
    """The command that reruns it."""
    hypothesis: dict[str, Any]
    """The hypothesis file's content as validated."""
    hypothesis_path: str | None = None
    setup: dict[str, Any]
    """Model spec and identity hash, SAE spec and hash, site, scenario file and hash, seeds."""
    environment: dict[str, Any]
    """Python, platform, package versions, git commit (and whether the tree was dirty)."""
    scenario_counts: dict[str, int]
    """Scenarios per condition used by the run."""
    feature_stats: list[dict[str, Any]] = Field(default_factory=list)
    """Per feature and condition: activation mean with interval, n, active fraction, histogram."""
    examples: list[ExampleRecord] = Field(default_factory=list)
    """Top-activating examples of the hypothesis' features, in full context."""
    probe: list[dict[str, Any]] = Field(default_factory=list)
    """The supervised probe baseline on the same site (see ``workbench.features.probes``)."""
    predictions: list[PredictionResult]
    verdict: Verdict
    verdict_reason: str
    """One sentence: which predictions decided the verdict."""
    responses: list[ResponseVerdict] = Field(default_factory=list)
    """Per-response protocol verdicts, when the hypothesis asks for them."""
    seconds: float = 0.0

    @model_validator(mode="before")
    @classmethod
    def _migrate(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return migrate_record(dict(data))
        return data


def migrate_record(data: dict[str, Any]) -> dict[str, Any]:
    """Bring a record of any known version to ``RECORD_VERSION``."""
    version = data.get("version", 1)
    if not isinstance(version, int) or version < 1 or version > RECORD_VERSION:
        raise WorkbenchError(
            f"run record version {version!r} is not one this workbench reads (1..{RECORD_VERSION}); "
            "update the workbench or re-run the hypothesis"
        )
    if version == 1:
        predictions = []
        for prediction in data.get("predictions", []):
            prediction = dict(prediction)
            held = prediction.pop("held", None)
            if "outcome" not in prediction:
                prediction["outcome"] = "holds" if held else "unclear"
            predictions.append(prediction)
        data["predictions"] = predictions
        data["version"] = 2
    return data


def decide_verdict(predictions: list[PredictionResult]) -> tuple[Verdict, str]:
    """``supported`` only if every prediction holds; ``refuted`` if one is contradicted;
    else ``inconclusive``."""
    if not predictions:
        return "inconclusive", "the hypothesis makes no predictions"
    contradicted = [p.name for p in predictions if p.outcome == "contradicted"]
    unclear = [p.name for p in predictions if p.outcome == "unclear"]
    if contradicted:
        return "refuted", f"contradicted with its interval clear of the threshold: {', '.join(contradicted)}"
    if unclear:
        return "inconclusive", f"interval overlaps the threshold: {', '.join(unclear)}"
    return "supported", "every prediction holds with its interval clear of the threshold"


def judge_prediction(measured: Estimate, comparison: str, threshold: float) -> Outcome:
    """Where the interval lies relative to the threshold."""
    low, high = measured.low, measured.high
    if measured.n == 0 or math.isnan(low) or math.isnan(high):  # nothing measured
        return "unclear"
    if comparison == ">=":
        return "holds" if low >= threshold else "contradicted" if high < threshold else "unclear"
    if comparison == "<=":
        return "holds" if high <= threshold else "contradicted" if low > threshold else "unclear"
    if comparison == "abs<":
        if -threshold < low and high < threshold:
            return "holds"
        return "contradicted" if low >= threshold or high <= -threshold else "unclear"
    raise WorkbenchError(f"unknown comparison {comparison!r}; use >=, <= or abs<")


def write_record(path: str | os.PathLike[str], record: RunRecord) -> None:
    """Write a record as JSON, atomically."""
    write_text_atomically(path, record.model_dump_json(indent=1))


def read_record(path: str | os.PathLike[str]) -> RunRecord:
    """Read (and migrate) a run record; a clear error if it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise WorkbenchError(f"no run record at {path}: give the RECORD.json a run wrote")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise WorkbenchError(f"{path} is not valid JSON (line {error.lineno}): {error.msg}") from None
    try:
        return RunRecord.model_validate(data)
    except WorkbenchError:
        raise
    except ValidationError as error:
        raise WorkbenchError(f"{path} is not a run record: {error}") from None
