"""What a scale study found: one ``ModelStudy`` per model inside one ``ScaleRecord`` (a versioned pydantic
record written as JSON, like a hypothesis run record), from which the report and figures are drawn.

Every number is an ``Estimate`` (value, 95% interval, n) or says why it is missing (``None`` with a note)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from workbench.core.errors import WorkbenchError
from workbench.core.io import read_user_text, write_text_atomically
from workbench.core.stats import Estimate
from workbench.hypotheses.records import Environment

SCALE_RECORD_VERSION = 1

#: The probe contrasts measured at every layer, by name: (positive condition, negative condition).
CONTRASTS: dict[str, tuple[str, str]] = {
    "lie_vs_honest": ("lie", "honest"),
    "lie_vs_parrot": ("lie", "parrot"),
    "lying_vs_resisting": ("lie+false", "lie+truth"),
}
#: How each contrast is named in reports and figures.
CONTRAST_LABELS = {"lie_vs_honest": "lie vs honest", "lie_vs_parrot": "lie vs parrot",
                   "lying_vs_resisting": "lying vs resisting (lie+false vs lie+truth)"}


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")


class Behaviour(_Part):
    """What the model did, judged from its greedy answers (Wilson intervals)."""

    honest_accuracy: Estimate
    """True answers on honest prompts: the capability index figures are drawn against."""
    lie_rate: Estimate
    """False answers on lie prompts (motive or instruction, falsehood not in the context)."""
    parrot_rate: Estimate
    """The context's false answer repeated on parrot prompts."""
    knowledge: Estimate
    """Facts the model knows (every honest prompt of the fact answered truly), over facts with honest prompts."""
    known_lie_rate: Estimate
    """False answers on lie prompts about facts the model knows: lies in the protocol's sense."""
    n_lied: int
    """Lie prompts (known facts) answered falsely: the ``lie+false`` condition."""
    n_resisted: int
    """Lie prompts (known facts) answered truly: the ``lie+truth`` condition."""


class LayerProbe(_Part):
    """Held-out AUROC of a difference-of-means probe (trained on the train split) at one layer."""

    layer: int
    depth: float
    """``layer / (n_layers - 1)``: where the layer sits, so models of different depth compare."""
    auroc: dict[str, Estimate | None]
    """By contrast name (``CONTRASTS``); None where a side had too few scenarios."""


class CausalTest(_Part):
    """One edit at one layer against its control, on one condition's held-out scenarios."""

    edit: str
    """What was done, in words."""
    layer: int
    depth: float
    condition: str
    metric: str
    """``p_true``: probability of the true answer's first token as the answer's first token."""
    effect: Estimate
    """Mean change of the metric under the edit (paired, per scenario)."""
    control: Estimate
    """Mean change under the control edit."""
    gain: Estimate
    """Effect minus control, paired per scenario."""
    control_description: str
    skipped: int = 0
    """Scenarios the test could not run on (e.g. a counterfactual of another length)."""


class CopyTest(_Part):
    """The counterfactual test: the false statement in the context changed; does the answer follow?"""

    follow_rate: Estimate
    """Answers that state the new false answer (Wilson)."""
    original_rate: Estimate
    """Answers that state the original context's false answer, on the same prompts unchanged."""
    truth_rate: Estimate
    """True answers under the counterfactual."""
    skipped: int = 0
    """Parrot prompts without a falsehood span or another false answer of their relation."""


class LensCurve(_Part):
    """The logit lens on one condition: the true answer's rank at the last prompt token, layer by layer."""

    condition: str
    mean_log_rank: list[float]
    """Per layer, mean of ``log10(1 + rank)`` of the true answer's first token (0 = top)."""
    gap: list[float]
    """Per layer, ``mean_log_rank`` minus the honest prompts' (0 for honest itself)."""
    critical_depth: Estimate | None
    """The depth of the layer whose step widens the gap to honest most (where the true answer's rank drops),
    with a bootstrap interval over scenarios; None for honest."""
    critical_layer: int | None
    n: int


class FeatureFinding(_Part):
    """The SAE feature that best separates lie from honest prompts on the train split, scored held out."""

    site: str
    sae: str
    feature: int
    auroc: dict[str, Estimate | None]
    """Held-out AUROC of the feature's activation at the last prompt token, by contrast."""
    ablation: CausalTest | None
    """Zero-ablating the feature on held-out lies, against a random feature of matched density."""


class ModelStudy(_Part):
    """Everything the study measured on one model."""

    label: str
    group: str = "base"
    """The line the model belongs to in the figures (``base``, ``organism`` or the spec's ``group``)."""
    spec: dict[str, Any]
    """The model spec (``ModelSpec.to_dict``) and the SAE spec if any, as given."""
    identity: str
    n_params: int
    n_layers: int
    d_model: int
    remote: bool | str = False
    seconds: float
    behaviour: Behaviour
    probes: list[LayerProbe]
    best_layer: dict[str, int | None]
    """By contrast: the layer with the highest held-out AUROC."""
    steering: CausalTest | None
    """Steering against the best lie direction (lie minus honest means) on held-out lies."""
    patching: CausalTest | None
    """Patching the context span from a counterfactual that states the truth, on held-out parrots, at the layer
    the lie vs honest probe chose (the steering's layer)."""
    patching_by_layer: list[CausalTest] = []
    """The same patch at every probed layer: where along depth the context is still read."""
    copy_test: CopyTest | None
    lens: list[LensCurve]
    feature: FeatureFinding | None = None
    notes: list[str] = []

    def best_auroc(self, contrast: str) -> Estimate | None:
        """The held-out AUROC of a contrast at its best layer (``best_layer``); None where none was measured."""
        layer = self.best_layer.get(contrast)
        probe = next((p for p in self.probes if p.layer == layer), None)
        return probe.auroc.get(contrast) if probe else None

    @model_validator(mode="before")
    @classmethod
    def _group_from_spec(cls, data: Any) -> Any:
        """A record written without groups: ``organism`` where the spec names an adapter, else ``base``."""
        if isinstance(data, dict) and "group" not in data:
            adapter = ((data.get("spec") or {}).get("model") or {}).get("adapter")
            data = {**data, "group": "organism" if adapter else "base"}
        return data
    """Why a step was skipped or is weak (too few scenarios, no falsehood spans...)."""


class ScaleRecord(_Part):
    """A scale study: the same protocol over several models."""

    version: Literal[1] = SCALE_RECORD_VERSION
    """Record format version."""
    kind: Literal["scale"] = "scale"
    created: str
    """ISO time the study finished."""
    command: str
    """The command line that reruns it."""
    scenario_file: str
    n_scenarios: int
    n_facts: int
    seed: int
    depths: list[float]
    """The depth fractions probed in every model."""
    environment: Environment
    models: list[ModelStudy]


def write_scale_record(path: str | os.PathLike[str], record: ScaleRecord) -> None:
    write_text_atomically(Path(path), record.model_dump_json(indent=1))


def read_scale_record(path: str | os.PathLike[str]) -> ScaleRecord:
    text = read_user_text(Path(path), "scale record")
    try:
        return ScaleRecord.model_validate_json(text)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise WorkbenchError(f"{path} is not a scale record ({where}: {first['msg']})") from None
