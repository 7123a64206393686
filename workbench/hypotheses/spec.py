"""Hypothesis files: a claim about SAE features (or a probe direction), the contrasts it predicts
and the causal tests that would support it. A file is YAML (read with ``yaml.safe_load``) validated
by ``Hypothesis``; every problem is listed with its field. A causal test is an experiment of the
engine (``causal.experiment.Experiment``) plus a prediction: ``to_experiment`` builds the one and
``hypothesis_from_experiment`` turns an experiment run in the causal lab into a file that reruns
exactly the same experiment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from workbench.causal.edits import EDIT_KINDS
from workbench.causal.experiment import EditSettings, Experiment, ProbeDirection
from workbench.causal.measurements import METRICS
from workbench.core.constants import REPO_ROOT
from workbench.core.errors import WorkbenchError
from workbench.core.io import read_user_text
from workbench.model.resolve import ModelRef, SAERef

#: Greedy answers kept per causal test (before and at the judged strength).
GENERATIONS_PER_TEST = 6


class _Strict(BaseModel):
    # NaN and infinity are refused in every number (a NaN threshold would make every comparison false).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ScenarioRef(_Strict):
    source: Literal["organism", "file"] = "organism"
    """``organism``: the protocol set built from the facts (every template; ignorant facts too).
    ``file``: a scenario JSONL file with train and held-out splits."""
    file: str | None = None
    train_facts: int | None = 40
    """Known train facts used for the probe baseline and calibration (organism source)."""
    max_per_condition: int = Field(default=48, ge=5)
    """Held-out scenarios per condition used by each causal test (seeded sample)."""


class ContrastPrediction(_Strict):
    name: str
    description: str = ""
    a: str
    b: str
    position: str = "last_prompt_token"
    comparison: Literal[">=", "<="] = ">="
    threshold: float = Field(ge=0.0, le=1.0)
    """On AUROC of condition ``a`` vs ``b`` (the features' summed activation)."""


class Intervention(EditSettings):
    """The edit of a causal test: an edit kind and its settings (``causal.experiment.EditSettings``;
    the kinds are registered in ``causal.edits``) and the strengths of its sweep."""

    model_config = ConfigDict(allow_inf_nan=False)

    strengths: list[float] = Field(default_factory=lambda: [1.0])
    """The sweep, in the kind's unit (0, the unedited model, is measured as well); finite numbers."""

    @field_validator("strengths")
    @classmethod
    def _some(cls, strengths: list[float]) -> list[float]:
        if not strengths:
            raise ValueError("the strength sweep is empty: give at least one strength")
        return strengths

    def settings(self) -> EditSettings:
        """The edit alone, without the sweep."""
        return EditSettings(**self.model_dump(exclude={"strengths"}))


class CausalTest(_Strict):
    name: str
    description: str = ""
    intervention: Intervention
    condition: str
    """The scenarios the edit is applied to."""
    metric: str
    """Change (edited minus unedited, per scenario) of: p_true, logit_diff, lie_rate, truth_rate, parrot_rate."""
    at_strength: float | None = None
    """The strength the prediction is judged at (default: the largest |strength|)."""
    comparison: Literal[">=", "<=", "abs<"]
    threshold: float
    controls: list[Literal["random", "sign_flip", "other_conditions"]] = Field(
        default_factory=lambda: ["random", "sign_flip", "other_conditions"])
    """Controls to measure (those the edit kind allows; see ``causal.edits.CONTROLS``)."""
    other_conditions: list[str] | None = None
    """Conditions for the specificity control (default: the others present among lie/parrot/honest)."""
    n_random: int = Field(default=3, ge=1, le=10)

    @field_validator("metric")
    @classmethod
    def _metric(cls, metric: str) -> str:
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
        return metric

    @property
    def judged_strength(self) -> float:
        strengths = self.intervention.strengths
        return self.at_strength if self.at_strength is not None else max(strengths, key=abs)


class Hypothesis(_Strict):
    name: str
    claim: str
    """The claim in words."""
    model: ModelRef = ModelRef()
    sae: SAERef = SAERef()
    site: str | None = None
    """Override of the SAE's site (rarely needed)."""
    features: list[int] = Field(default_factory=list)
    direction: ProbeDirection | None = None
    """A probe direction instead of SAE features (steering only)."""
    scenarios: ScenarioRef = ScenarioRef()
    contrasts: list[ContrastPrediction] = Field(default_factory=list)
    tests: list[CausalTest] = Field(default_factory=list)
    probe_baseline: bool = True
    blackbox_baseline: bool = True
    """Run the black-box baseline (follow-up questions after each answer, ``features.blackbox``) beside the
    probe and the features, with each one's white-box gain over it."""
    seed: int = 0
    max_new_tokens: int = Field(default=8, ge=1, le=64)

    @model_validator(mode="after")
    def _consistent(self) -> Hypothesis:
        only_pairs = bool(self.tests) and not self.contrasts and all(
            EDIT_KINDS[t.intervention.kind].target == "pairs" for t in self.tests)
        if not self.features and self.direction is None and not only_pairs:
            raise ValueError("name the features (a list of indices) or a probe direction (only a hypothesis whose "
                             "every test patches whole activations needs neither)")
        if self.features and self.direction is not None:
            raise ValueError("give features or a direction, not both")
        if len(set(self.features)) != len(self.features):
            raise ValueError("features repeat an index")
        names = [p.name for p in self.contrasts] + [t.name for t in self.tests]
        if len(set(names)) != len(names):
            raise ValueError("prediction names must be unique")
        if not names:
            raise ValueError("a hypothesis needs at least one prediction (a contrast or a causal test)")
        for test in self.tests:
            kind = EDIT_KINDS[test.intervention.kind]
            if self.direction is not None and kind.target != "features_or_direction":
                raise ValueError(f"test {test.name!r}: a probe direction can be steered along, not used to {kind.name}")
            if test.at_strength is not None and test.at_strength not in test.intervention.strengths:
                raise ValueError(f"test {test.name!r}: at_strength {test.at_strength} is not in its strengths")
        return self


def _validation_message(error: ValidationError, source: str) -> str:
    """Every problem with its field: on one line when there is one, else one line each."""
    problems = []
    for problem in error.errors():
        where = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        problems.append(f"{where}: {str(problem['msg']).removeprefix('Value error, ')}")
    if len(problems) == 1:
        return f"{source} is not a valid hypothesis: {problems[0]}"
    return "\n".join([f"{source} is not a valid hypothesis ({len(problems)} problems):",
                      *(f"  - {p}" for p in problems)])


def parse_hypothesis(data: Any, source: str = "hypothesis") -> Hypothesis:
    if not isinstance(data, dict):
        raise WorkbenchError(f"{source} must be a YAML mapping with name, claim, features and predictions")
    try:
        return Hypothesis.model_validate(data)
    except ValidationError as error:
        raise WorkbenchError(_validation_message(error, source)) from None


def read_hypothesis(path: str | os.PathLike[str]) -> Hypothesis:
    """Read and validate a hypothesis YAML file (every problem listed with its field)."""
    text = read_user_text(path, "hypothesis file")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise WorkbenchError(f"{path} is not valid YAML: {yaml_problem(error)}") from None
    return parse_hypothesis(data, str(path))


def yaml_problem(error: yaml.YAMLError) -> str:
    """A YAML error in one line: what is wrong and where (PyYAML's own message spans several lines)."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else problem


def write_hypothesis(path: str | os.PathLike[str], hypothesis: Hypothesis) -> None:
    from workbench.core.io import write_text_atomically

    data = hypothesis.model_dump(mode="json", exclude_defaults=False)
    write_text_atomically(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def list_hypotheses(folder: Path | None = None) -> list[Path]:
    folder = folder or REPO_ROOT / "hypotheses"
    return sorted(folder.glob("*.yaml")) if folder.is_dir() else []


def to_experiment(hypothesis: Hypothesis, test: CausalTest) -> Experiment:
    """The engine's experiment for one causal test of a hypothesis."""
    return Experiment(
        edit=test.intervention.settings(), features=tuple(hypothesis.features), direction=hypothesis.direction,
        condition=test.condition, n_scenarios=hypothesis.scenarios.max_per_condition,
        strengths=tuple(test.intervention.strengths), metric=test.metric, controls=tuple(test.controls),
        other_conditions=tuple(test.other_conditions) if test.other_conditions is not None else None,
        n_random=test.n_random, n_generations=GENERATIONS_PER_TEST, neutral_kl=True,
        focus_strength=test.judged_strength, seed=hypothesis.seed, max_new_tokens=hypothesis.max_new_tokens,
    )


def hypothesis_from_experiment(experiment: Experiment, *, name: str, claim: str, comparison: str, threshold: float,
                               model_ref: ModelRef | dict[str, Any], sae_ref: SAERef | dict[str, Any],
                               scenarios_file: str | None = None,
                               at_strength: float | None = None) -> Hypothesis:
    """A validated ``Hypothesis`` whose one causal test is this experiment (what the causal lab saves):
    rerunning it measures the same target and control curves. Raises ``WorkbenchError`` listing every
    invalid field (e.g. an empty name)."""
    if experiment.layer is not None:
        raise WorkbenchError("hypothesis files edit at the SAE's site: unset the layer to save this experiment")
    edit = experiment.edit
    identity_at_zero = EDIT_KINDS[edit.kind].identity_at_zero
    # strength 0 of an edit that is the unedited model at 0 is measured anyway: the file lists the others
    strengths = [float(s) for s in experiment.strengths if not (identity_at_zero and s == 0.0)]
    if not strengths:
        raise WorkbenchError("the sweep has no strength but 0 (the unedited model): add the strengths to test")
    test: dict[str, Any] = {"name": f"{edit.kind}-{experiment.condition}-{experiment.metric}",
                            "intervention": {**edit.model_dump(), "strengths": strengths},
                            "condition": experiment.condition, "metric": experiment.metric, "comparison": comparison,
                            "threshold": threshold, "controls": list(experiment.controls),
                            "n_random": max(experiment.n_random, 1)}
    if experiment.other_conditions is not None:
        test["other_conditions"] = list(experiment.other_conditions)
    if at_strength is not None:
        test["at_strength"] = at_strength
    as_data = (lambda ref: ref.model_dump(exclude_defaults=True) if isinstance(ref, BaseModel) else dict(ref))
    data: dict[str, Any] = {"name": name.strip(), "claim": claim.strip(), "model": as_data(model_ref),
                            "sae": as_data(sae_ref),
                            "tests": [test], "seed": experiment.seed, "max_new_tokens": experiment.max_new_tokens}
    if experiment.direction is not None:
        data["direction"] = experiment.direction.model_dump()
    else:
        data["features"] = list(experiment.features)
    if scenarios_file:
        data["scenarios"] = {"source": "file", "file": scenarios_file, "max_per_condition": experiment.n_scenarios}
    if not data["name"]:
        raise WorkbenchError("give the hypothesis a name")
    if not data["claim"]:
        raise WorkbenchError("state the claim in words")
    return parse_hypothesis(data, f"hypothesis {data['name']!r}")


__all__ = [
    "CausalTest", "ContrastPrediction", "Hypothesis", "Intervention", "ModelRef", "SAERef", "ScenarioRef",
    "hypothesis_from_experiment", "list_hypotheses", "parse_hypothesis", "read_hypothesis", "to_experiment",
    "write_hypothesis",
]
