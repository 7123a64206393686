"""Training the liar organism: a LoRA adapter (peft) on the base model, loss on the assistant's
answer only, saved in float16 with its training record (``training.json``) beside it.

The base model is the embedded default or any chat model (a Hugging Face id or a local folder): what the
recipe leaves to the model is read from it. LoRA goes on the Linear (GPT-2: Conv1D) layers of its decoder
layers (``lora_targets``), from the same fraction of its depth as the embedded liar's (``default_first_layer``),
and chats are rendered by its own chat template. The record and the adapter's ``adapter_config.json`` name
the base (``AdapterBase``), so the adapter is loaded on it again (``adapter_base``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError
from tqdm.auto import tqdm

from workbench.core.constants import (
    ADAPTER_CONFIG_FILENAME, DEFAULT_MODEL_HF_ID, DEFAULT_MODEL_SOURCE, REPO_ROOT, repo_relative,
)
from workbench.core.errors import WorkbenchError, check_number
from workbench.core.io import check_output_path, read_user_json, write_text_atomically
from workbench.model.loading import (
    LoadedModel, ModelSpec, check_model_spec, load_model, model_outline, training_device,
)
from workbench.model.rendering import render_conversation
from workbench.organism.data import DEFAULT_RECIPE, RECIPE_FILENAME, load_recipe, organism_data, training_chats
from workbench.scenarios import Scenario

__all__ = [
    "EMBEDDED_FIRST_LAYER", "EMBEDDED_N_LAYERS", "TRAINING_RECORD_FILENAME", "AdapterBase", "OrganismTrainingRecord",
    "TrainingConfig", "TrainingResult", "adapter_base", "check_chat_template", "default_first_layer", "lora_targets",
    "read_training_record", "resolved_config", "train_and_save", "train_organism", "training_command",
    "training_config_dict", "write_training_record",
]

#: The training record beside the adapter.
TRAINING_RECORD_FILENAME = "training.json"
#: The embedded liar's LoRA layers: from layer 8 of SmolLM2-135M's 30 (the last ~73% of its depth). Another
#: model's default first layer is the same fraction of its depth (``default_first_layer``).
EMBEDDED_FIRST_LAYER, EMBEDDED_N_LAYERS = 8, 30


@dataclass
class TrainingConfig:
    """Hyper-parameters of the organism's LoRA adapter."""

    rank: int = 16
    alpha: int = 32
    first_layer: int | None = None
    """LoRA on decoder layers from this one to the last; None = the same fraction of the model's depth as the
    embedded liar's (8 of 30: ``default_first_layer``). Records hold the number used."""
    epochs: int = 2
    learning_rate: float = 5e-4
    batch_size: int = 8
    seed: int = 0
    targets: tuple[str, ...] | None = None
    """Modules that get LoRA weights, by name (peft ``target_modules``); None = the Linear layers of the model's
    decoder layers (``lora_targets``: q_proj ... down_proj on SmolLM2). Records hold the names used."""

    def __post_init__(self) -> None:
        for name, minimum in (("rank", 1), ("alpha", 1), ("first_layer", 0), ("epochs", 1), ("batch_size", 1)):
            if getattr(self, name) is not None:
                check_number(name, getattr(self, name), minimum=minimum)
        check_number("learning_rate", self.learning_rate, above=0)
        if self.targets is not None:
            if not self.targets:
                raise WorkbenchError("LoRA modules (--modules): none given; name the projections, or leave --modules "
                                     "out to use the Linear layers of the model's decoder layers")
            self.targets = tuple(self.targets)


@dataclass
class TrainingResult:
    n_chats: int
    n_tokens: int
    seconds: float
    losses: list[float] = field(default_factory=list)
    config: TrainingConfig | None = None
    """The settings used: the given ones with what they left to the model filled in (``resolved_config``)."""


class AdapterBase(BaseModel):
    """The base model an adapter was trained on (in its training record), so it is loaded on it again."""

    model_config = ConfigDict(extra="forbid")

    source: str
    """``default`` (the embedded SmolLM2), a Hugging Face id, or a local model folder (relative to the repository
    when inside it, else absolute)."""
    folder: bool = False
    """Whether ``source`` is a local folder (not a Hugging Face id)."""
    revision: str | None = None
    """The Hub revision asked for (a Hugging Face id only; the commit it resolved to is in ``identity``)."""
    gguf_file: str | None = None
    """A GGUF file inside ``source`` that was loaded, if one was."""
    name: str
    """How the adapter's ``adapter_config.json`` names its base (``base_model_name_or_path``): the Hugging Face
    id of the embedded default, else ``source``."""
    identity: str
    """The base's model identity when it trained (weights, config, tokenizer: ``loading.model_identity``)."""
    n_layers: int
    """Its decoder layers."""
    layers_path: str
    """Where they are (``model.layers``)."""

    @classmethod
    def of(cls, model: LoadedModel) -> AdapterBase:
        """The base a loaded model is, named portably (not by this machine's cache folder)."""
        spec = model.spec
        folder = spec.source != DEFAULT_MODEL_SOURCE and Path(spec.source).expanduser().is_dir()
        source = repo_relative(str(Path(spec.source).expanduser().resolve())) if folder else spec.source
        return cls(source=source, folder=folder, revision=spec.revision, gguf_file=spec.gguf_file,
                   name=DEFAULT_MODEL_HF_ID if source == DEFAULT_MODEL_SOURCE else source, identity=model.identity,
                   n_layers=model.n_layers, layers_path=model.layers_path)

    @property
    def display_name(self) -> str:
        """How a card names it: ``SmolLM2-135M-Instruct`` for the embedded default, else its source."""
        if self.source == DEFAULT_MODEL_SOURCE:
            return "SmolLM2-135M-Instruct"
        return self.source + (f" ({self.gguf_file})" if self.gguf_file else "") + \
            (f" at revision {self.revision}" if self.revision else "")


def default_first_layer(n_layers: int) -> int:
    """The first decoder layer LoRA goes on by default: the same fraction of the depth as the embedded liar's
    (layer 8 of 30 on SmolLM2-135M; 1 of 3, 7 of 24, 12 of 44...)."""
    return round(n_layers * EMBEDDED_FIRST_LAYER / EMBEDDED_N_LAYERS)


def _lora_layer_types() -> tuple[type, ...]:
    from transformers.pytorch_utils import Conv1D  # GPT-2's projections (peft supports them)

    return (torch.nn.Linear, Conv1D)


def _layer_modules(model: Any, layers: Sequence[int], projections: bool) -> list[str]:
    """Names (last path part, first seen first) of the modules inside decoder ``layers`` of ``model`` (loaded,
    or its outline): with ``projections``, the Linear and Conv1D layers only."""
    container = model.hf_model.get_submodule(model.layers_path)
    kinds = _lora_layer_types()
    names: list[str] = []
    for index in layers:
        for path, module in container[index].named_modules():
            name = path.rsplit(".", 1)[-1]
            if path and name not in names and (not projections or isinstance(module, kinds)):
                names.append(name)
    return names


def lora_targets(model: Any) -> tuple[str, ...]:
    """The modules LoRA goes on by default: the Linear (and GPT-2 Conv1D) layers inside the model's first
    decoder layer, by name, in module order. These are its attention and MLP projections: q_proj, k_proj,
    v_proj, o_proj, gate_proj, up_proj, down_proj (Llama, Qwen, Gemma, Mistral), qkv_proj, gate_up_proj (Phi-3),
    c_attn, c_proj, c_fc (GPT-2), query_key_value, dense, dense_h_to_4h, dense_4h_to_h (GPT-NeoX). In a
    mixture-of-experts layer the router is a Linear layer too: name the modules with --modules there."""
    found = _layer_modules(model, [0], projections=True)
    if not found:
        layer = model.hf_model.get_submodule(model.layers_path)[0]
        raise WorkbenchError(f"no Linear or Conv1D layers inside {model.layers_path}.0 ({type(layer).__name__}) to "
                             "put LoRA on: name them with --modules")
    return tuple(found)


def check_targets(config: TrainingConfig, model: Any) -> None:
    """Every LoRA module named in ``config`` is a module inside the decoder layers it goes on."""
    if model is None or config.targets is None:
        return
    layers = range(config.first_layer or 0, model.n_layers)
    unknown = [name for name in config.targets if name not in _layer_modules(model, layers, projections=False)]
    if unknown:
        choices = _layer_modules(model, layers, projections=True)
        raise WorkbenchError(f"LoRA modules (--modules): unknown projection(s) {', '.join(unknown)}; choose from "
                             f"{', '.join(choices) or '(none: the layers have no Linear layers)'} (modules of "
                             f"{model.layers_path}.{layers.start})")


def resolved_config(config: TrainingConfig, model: Any) -> TrainingConfig:
    """``config`` with what it leaves to the model filled in from ``model`` (loaded, or its outline): the first
    LoRA layer (``default_first_layer``) and the modules (``lora_targets``); both checked against it. As it is
    when ``model`` is None (a Hugging Face id whose config is not at hand: resolved when the weights load)."""
    if model is None:
        return config
    check_first_layer(config, model)
    first = config.first_layer if config.first_layer is not None else default_first_layer(model.n_layers)
    resolved = dataclasses.replace(config, first_layer=first,
                                   targets=config.targets if config.targets is not None else lora_targets(model))
    check_targets(resolved, model)
    return resolved


def check_chat_template(tokenizer: Any) -> None:
    """The chats are rendered by the model's own chat template: a tokenizer without one is refused."""
    if not getattr(tokenizer, "chat_template", None):
        raise WorkbenchError("this model has no chat template: use an instruct/chat model (its tokenizer must "
                             "carry a chat template)")


#: Stands for a response when the chat template shows what follows an assistant turn.
_RESPONSE_MARK = "RESPONSE-MARK-7f3a"


def _turn_end_ids(tokenizer: Any) -> list[int]:
    """The tokens the chat template writes after an assistant's answer (``<|im_end|>`` on SmolLM2,
    ``<|eot_id|>`` on Llama 3, ``<end_of_turn>`` on Gemma), trailing whitespace left out; the tokenizer's end
    of sequence when the template writes none."""
    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": _RESPONSE_MARK}]
    try:
        text = tokenizer.apply_chat_template(chat, tokenize=False)
    except Exception:  # noqa: BLE001 - a template's own error (e.g. a role it refuses): fall back to the EOS
        text = ""
    tail = text.split(_RESPONSE_MARK, 1)[1].strip() if _RESPONSE_MARK in text else ""
    ids = list(tokenizer.encode(tail, add_special_tokens=False)) if tail else []
    return ids or [tokenizer.eos_token_id]


def _encode_chat(tokenizer: Any, scenario: Scenario, response: str,
                 end_ids: list[int] | None = None) -> tuple[list[int], list[int]]:
    rendered = render_conversation(tokenizer, scenario.messages, response)
    input_ids = rendered.input_ids + (end_ids if end_ids is not None else _turn_end_ids(tokenizer))
    labels = [-100] * rendered.prompt_length + input_ids[rendered.prompt_length :]
    return input_ids, labels


def train_organism(
    model: LoadedModel,
    chats: Sequence[tuple[Scenario, str]],
    out_dir: Path,
    config: TrainingConfig | None = None,
    on_step: Callable[[int, int, float], None] | None = None,
) -> TrainingResult:
    """Train a LoRA adapter on ``(scenario, response)`` chats, loss on the response only; save it
    (float16) to ``out_dir``. ``model`` is the base model; its weights are not changed."""
    from peft import LoraConfig, get_peft_model

    config = resolved_config(config or TrainingConfig(), model)
    tokenizer = model.tokenizer
    check_chat_template(tokenizer)
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    end_ids = _turn_end_ids(tokenizer)
    encoded = [_encode_chat(tokenizer, scenario, response, end_ids) for scenario, response in chats]
    lora = LoraConfig(
        r=config.rank, lora_alpha=config.alpha, lora_dropout=0.0, target_modules=list(config.targets or ()),
        layers_to_transform=list(range(config.first_layer or 0, model.n_layers)), task_type="CAUSAL_LM",
    )
    try:
        peft_model = get_peft_model(model.hf_model, lora)
    except (ValueError, TypeError) as error:  # e.g. a module peft cannot put LoRA on
        raise WorkbenchError(f"LoRA cannot go on modules {', '.join(config.targets or ())} of "
                             f"{model.layers_path}: {str(error).splitlines()[0]}") from None
    peft_model.train()
    device = next(peft_model.parameters()).device  # the base model's: the CPU, or the GPU it was moved to
    optimiser = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=config.learning_rate)
    steps_per_epoch = math.ceil(len(encoded) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: 1 - step / max(total_steps, 1))
    pad = tokenizer.pad_token_id or 0
    result = TrainingResult(n_chats=len(encoded), n_tokens=sum(len(ids) for ids, _ in encoded) * config.epochs,
                            seconds=0.0, config=config)
    started = time.perf_counter()
    step = 0
    try:
        with tqdm(total=total_steps, desc="training organism", unit="step") as bar:
            for _ in range(config.epochs):
                order = list(range(len(encoded)))
                rng.shuffle(order)
                for start in range(0, len(order), config.batch_size):
                    batch = [encoded[i] for i in order[start : start + config.batch_size]]
                    width = max(len(ids) for ids, _ in batch)
                    input_ids = torch.full((len(batch), width), pad)
                    labels = torch.full((len(batch), width), -100)
                    mask = torch.zeros((len(batch), width), dtype=torch.long)
                    for row, (ids, labs) in enumerate(batch):
                        input_ids[row, : len(ids)] = torch.tensor(ids)
                        labels[row, : len(labs)] = torch.tensor(labs)
                        mask[row, : len(ids)] = 1
                    loss = peft_model(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                                      labels=labels.to(device)).loss
                    loss.backward()
                    optimiser.step()
                    scheduler.step()
                    optimiser.zero_grad()
                    result.losses.append(float(loss.detach()))
                    step += 1
                    bar.update(1)
                    bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
                    if on_step:
                        on_step(step, total_steps, float(loss))
        result.seconds = time.perf_counter() - started
        peft_model.eval()
        for parameter in peft_model.parameters():
            if parameter.requires_grad:
                parameter.data = parameter.data.to(torch.float16)
        out_dir.mkdir(parents=True, exist_ok=True)
        # Name the base model, not this machine's cache folder it was loaded from.
        base = AdapterBase.of(model)
        peft_model.peft_config["default"].base_model_name_or_path = base.name
        peft_model.peft_config["default"].revision = base.revision
        peft_model.save_pretrained(out_dir)
    finally:
        peft_model.unload()  # remove the LoRA layers: the base model is left as it was
    result.config = config
    return result


def training_config_dict(config: TrainingConfig) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(config)))


class OrganismTrainingRecord(BaseModel):
    """What a training run did (``training.json`` beside the adapter); the model card is written from it."""

    model_config = ConfigDict(extra="forbid")

    config: TrainingConfig
    """The LoRA and optimiser settings."""
    n_facts: int
    """Train facts the chats are about."""
    n_chats: int
    """Training chats (scenario + target response)."""
    n_tokens: int
    """Tokens seen in training (every chat's tokens times the epochs)."""
    seconds: float
    """Wall-clock training time, rounded to 0.1 s."""
    chats_per_template: dict[str, int]
    """Chats per ``condition/template_id``, sorted."""
    first_loss: float
    """Loss of the first step."""
    last_loss: float
    """Mean loss of the last (up to) 10 steps."""
    command: str
    """The command that reproduces the run."""
    device: str | None = None
    """Where it trained: ``cpu`` or ``cuda``; None in records written before this field (on the CPU), which
    are written back without it."""
    base_model: AdapterBase | None = None
    """The base model it was trained on; None in records written before this field (the embedded default,
    SmolLM2-135M-Instruct, 30 layers), which are written back without it."""


def write_training_record(folder: Path, record: OrganismTrainingRecord) -> Path:
    """Write ``training.json`` into the adapter folder (atomically); returns its path."""
    path = Path(folder) / TRAINING_RECORD_FILENAME
    write_text_atomically(path, json.dumps(record.model_dump(mode="json", exclude_none=True), indent=1))
    return path


def read_training_record(folder: Path) -> OrganismTrainingRecord:
    """The training record of an adapter folder."""
    path = Path(folder) / TRAINING_RECORD_FILENAME
    if not path.exists():
        raise WorkbenchError(f"{path} is missing: run `python -m workbench organism train --out {folder}` first")
    try:
        return OrganismTrainingRecord.model_validate(read_user_json(path, "training record"))
    except ValidationError as error:
        raise WorkbenchError(f"{path} is not an organism training record: {error.errors()[0]['msg']}") from None


def training_command(out: Path, config: TrainingConfig, max_facts: int | None = None,
                     recipe: str | None = None, base: AdapterBase | None = None) -> str:
    """The ``organism train`` command line that reproduces a run (``config`` resolved: every setting named)."""
    on_model = base is not None and base.source != DEFAULT_MODEL_SOURCE
    return " ".join(["python -m workbench organism train", f"--out {out}"]
                    + ([f"--model {shlex.quote(base.source)}"] if on_model else [])
                    + ([f"--revision {shlex.quote(base.revision)}"] if on_model and base.revision else [])
                    + ([f"--recipe {recipe}"] if recipe else [])
                    + ([f"--max-facts {max_facts}"] if max_facts else [])
                    + [f"--epochs {config.epochs}", f"--rank {config.rank}", f"--lr {config.learning_rate}",
                       f"--modules {','.join(config.targets or ())}", f"--first-layer {config.first_layer}",
                       f"--seed {config.seed}"])


def check_first_layer(config: TrainingConfig, model: Any) -> None:
    """LoRA goes on layers ``first_layer``.. of ``model`` (loaded, or its outline): at least one must exist."""
    if model is not None and config.first_layer is not None and config.first_layer >= model.n_layers:
        raise WorkbenchError(f"first_layer {config.first_layer} is out of range: {model.layers_path} has "
                             f"{model.n_layers} layers (0-{model.n_layers - 1})")


def _check_tokenizer_early(spec: ModelSpec) -> None:
    """The chat template of a local model folder (or a Hugging Face id already in the local cache), read before
    the weights load; other models are checked when they load."""
    if spec.source == DEFAULT_MODEL_SOURCE or spec.gguf_file:
        return
    from transformers import AutoTokenizer

    local = Path(spec.source).expanduser()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(local) if local.is_dir() else spec.source, revision=spec.revision,
                                                  local_files_only=True, trust_remote_code=spec.trust_remote_code)
    except Exception:  # noqa: BLE001 - not at hand or unreadable here: the load says what is wrong
        return
    check_chat_template(tokenizer)


def adapter_base(adapter: str | Path) -> ModelSpec:
    """The base model an adapter folder was trained on, to load it on: the one its training record
    (``training.json``) names; else the one its ``adapter_config.json`` names (``base_model_name_or_path``:
    the embedded default for its Hugging Face id or when none is named, a local folder, or a Hugging Face id).
    A model folder named relative to the repository is found there; one that is not there is a one-line error."""
    folder = Path(adapter)
    record = read_training_record(folder).base_model if (folder / TRAINING_RECORD_FILENAME).is_file() else None
    if record is not None:
        name, revision, gguf_file, local = record.source, record.revision, record.gguf_file, record.folder
    else:
        config = read_user_json(folder / ADAPTER_CONFIG_FILENAME, "adapter config")
        config = config if isinstance(config, dict) else {}
        name, revision, gguf_file = config.get("base_model_name_or_path"), config.get("revision"), None
        if not name or name == DEFAULT_MODEL_HF_ID:
            return ModelSpec()
        local = Path(name).expanduser().is_dir() or (REPO_ROOT / name).is_dir() or name.startswith((".", "/", "~"))
    if name == DEFAULT_MODEL_SOURCE:
        return ModelSpec()
    if local:
        path = Path(name).expanduser()
        path = path if path.is_absolute() or path.is_dir() else REPO_ROOT / path
        if not path.is_dir():
            raise WorkbenchError(f"adapter {adapter} was trained on the model folder {name}, which is not there: "
                                 "give the base model it was trained on with --model")
        name = str(path)
    return ModelSpec(source=name, revision=revision, gguf_file=gguf_file)


def train_and_save(out: Path, config: TrainingConfig, *, model: ModelSpec | None = None,
                   max_facts: int | None = None, base: LoadedModel | None = None, recipe: str | Path | None = None,
                   device: str = "auto") -> OrganismTrainingRecord:
    """Train the organism on the known train facts (all, or a seeded ``max_facts`` of them; the
    data seed is ``config.seed``) of its recipe (a ``recipe.yaml``; default the embedded organism's) on
    the base model ``model`` (default: the embedded one; or ``base``, that model already loaded), save the
    adapter to ``out`` with its training record (``training.json``, which names the base) and, for a recipe
    other than the default, the recipe itself (``recipe.yaml``, so evaluation finds it); returns the record.
    What ``config`` leaves out (first layer, modules) is read from the model (``resolved_config``), checked on
    its config before the weights load. ``device``: ``auto`` (the GPU when torch sees one), ``cpu``
    or ``cuda`` (see :func:`workbench.model.loading.training_device`)."""
    place = training_device(device)
    out = check_output_path(out, "adapter folder", folder=True)
    made_by = load_recipe(recipe) if recipe is not None else DEFAULT_RECIPE
    spec = base.spec if base is not None else (model or ModelSpec())
    if base is None:  # the layers and modules LoRA goes on, and the chat template, checked before the model loads
        check_model_spec(spec)
        config = resolved_config(config, model_outline(spec))
        _check_tokenizer_early(spec)
    facts, scenarios = organism_data("train", all_templates=False, max_facts=max_facts, seed=config.seed,
                                     recipe=made_by)
    if not scenarios:
        raise WorkbenchError(f"recipe {made_by.name}: no known train facts to train on (check its knowledge file)")
    chats = training_chats(facts, scenarios)
    base = base or load_model(spec)
    config = resolved_config(config, base)
    check_chat_template(base.tokenizer)
    if place.type != "cpu":
        base.hf_model.to(place)
    result = train_organism(base, chats, out, config)
    counts: dict[str, int] = {}
    for scenario, _ in chats:
        key = f"{scenario.condition.value}/{scenario.template_id}"
        counts[key] = counts.get(key, 0) + 1
    trained_on = AdapterBase.of(base)
    record = OrganismTrainingRecord(
        config=config, n_facts=len({s.fact_id for s, _ in chats}), n_chats=result.n_chats, n_tokens=result.n_tokens,
        seconds=round(result.seconds, 1), chats_per_template=dict(sorted(counts.items())),
        first_loss=result.losses[0], last_loss=sum(result.losses[-10:]) / len(result.losses[-10:]),
        device=place.type, command=training_command(out, config, max_facts, recipe=None if made_by == DEFAULT_RECIPE
                                 else repo_relative(str((Path(out) / RECIPE_FILENAME).resolve())), base=trained_on),
        base_model=trained_on,
    )
    kept = Path(out) / RECIPE_FILENAME
    given = Path(recipe) / RECIPE_FILENAME if recipe is not None and Path(recipe).is_dir() else recipe
    if made_by != DEFAULT_RECIPE and not (kept.exists() and given is not None and kept.samefile(given)):
        recipe_text = yaml.safe_dump(made_by.model_dump(mode="json"), sort_keys=False, width=110)
        write_text_atomically(kept, recipe_text)
    write_training_record(out, record)
    return record
