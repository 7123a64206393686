"""Stage 8b, scale: one protocol over a family of models, as one study. ``study`` runs it (behaviour,
per-depth probes, steering and patching at the best layer, the copy mechanism, SAE features where a
model's spec names an SAE) and ``records`` holds what it found (``ScaleRecord``), one ``ModelStudy``
per model. Every trace goes through the one tracing helper, so a model spec marked remote runs on NDIF.
"""

from workbench.scale.records import ModelStudy, ScaleRecord, read_scale_record, write_scale_record
from workbench.scale.study import StudyModel, parse_model_spec, run_study

__all__ = ["ModelStudy", "ScaleRecord", "StudyModel", "parse_model_spec", "read_scale_record", "run_study",
           "write_scale_record"]
