"""Intent workbench: incriminate model intent with SAE features and causal tests.

The library never imports streamlit; the app (``Home.py``, ``pages/``) calls into it.
"""

import os

# Idle OpenMP threads sleep instead of spinning (unless the environment says otherwise). On a
# busy 2-core machine spinning threads made loading the organism ~7x and small forward passes
# ~25x slower. Only effective when torch is imported after this package.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from workbench.core.conditions import CONDITIONS, Condition
from workbench.core.errors import FeatureIndexError, ModelLoadError, SAELoadError, SiteError, WorkbenchError
from workbench.core.positions import POSITIONS
from workbench.core.stats import DetectionMetrics, Estimate, detection_metrics
from workbench.features.capture import Capture, CaptureInput, inputs_from_scenarios, inputs_from_texts, read_capture, run_capture
from workbench.features.contrast import Contrast, ContrastRow, contrast
from workbench.features.evidence import FeatureEvidence, feature_evidence
from workbench.model.loading import LoadedModel, ModelSpec, load_model
from workbench.model.resolve import ModelRef, SAERef, refs_from_specs, specs_from_refs
from workbench.model.saes import LoadedSAE, SAESpec, load_sae, read_registry
from workbench.scenarios import Scenario, Split, build_contrast_set, load_facts, read_scenarios, write_scenarios

__all__ = [
    "CONDITIONS", "POSITIONS", "Capture", "CaptureInput", "Condition", "Contrast", "ContrastRow", "DetectionMetrics",
    "Estimate", "FeatureEvidence", "FeatureIndexError", "LoadedModel", "LoadedSAE", "ModelLoadError", "ModelRef", "ModelSpec", "SAELoadError",
    "SAERef", "SAESpec", "Scenario", "SiteError", "Split", "WorkbenchError", "build_contrast_set", "contrast",
    "detection_metrics", "feature_evidence", "inputs_from_scenarios", "inputs_from_texts", "load_facts", "load_model", "load_sae",
    "read_capture", "read_registry", "read_scenarios", "refs_from_specs", "run_capture", "specs_from_refs",
    "write_scenarios",
]
