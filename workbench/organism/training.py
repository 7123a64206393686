"""Training the liar organism: a LoRA adapter (peft) on the base model, loss on the assistant's
answer only, saved in float16 with its training record (``training.json``) beside it."""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError
from tqdm.auto import tqdm

from workbench.core.constants import DEFAULT_MODEL_HF_ID, DEFAULT_MODEL_SOURCE, LORA_TARGETS, repo_relative
from workbench.core.errors import WorkbenchError, check_number
from workbench.core.io import check_output_path, read_user_json, write_text_atomically
from workbench.model.loading import LoadedModel, ModelSpec, load_model, model_outline, training_device
from workbench.model.rendering import render_conversation
from workbench.organism.data import DEFAULT_RECIPE, RECIPE_FILENAME, load_recipe, organism_data, training_chats
from workbench.scenarios import Scenario

__all__ = [
    "TRAINING_RECORD_FILENAME", "OrganismTrainingRecord", "TrainingConfig", "TrainingResult", "read_training_record",
    "train_and_save", "train_organism", "training_command", "training_config_dict", "write_training_record",
]

#: The training record beside the adapter.
TRAINING_RECORD_FILENAME = "training.json"


@dataclass
class TrainingConfig:
    """Hyper-parameters of the organism's LoRA adapter."""

    rank: int = 16
    alpha: int = 32
    first_layer: int = 8
    """LoRA on decoder layers from this one to the last (the pilot used 8-29 of 30)."""
    epochs: int = 2
    learning_rate: float = 5e-4
    batch_size: int = 8
    seed: int = 0
    targets: tuple[str, ...] = LORA_TARGETS

    def __post_init__(self) -> None:
        for name, minimum in (("rank", 1), ("alpha", 1), ("first_layer", 0), ("epochs", 1), ("batch_size", 1)):
            check_number(name, getattr(self, name), minimum=minimum)
        check_number("learning_rate", self.learning_rate, above=0)
        unknown = sorted(set(self.targets) - set(LORA_TARGETS))
        if unknown or not self.targets:
            raise WorkbenchError(f"LoRA modules (--modules): unknown projection(s) {', '.join(unknown) or '(none given)'}; "
                                 f"choose from {', '.join(LORA_TARGETS)}")
        self.targets = tuple(self.targets)


@dataclass
class TrainingResult:
    n_chats: int
    n_tokens: int
    seconds: float
    losses: list[float] = field(default_factory=list)


def _encode_chat(tokenizer: Any, scenario: Scenario, response: str) -> tuple[list[int], list[int]]:
    rendered = render_conversation(tokenizer, scenario.messages, response)
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    end_ids = [end] if isinstance(end, int) and end >= 0 else [tokenizer.eos_token_id]
    input_ids = rendered.input_ids + end_ids
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

    config = config or TrainingConfig()
    check_first_layer(config, model)
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    tokenizer = model.tokenizer
    encoded = [_encode_chat(tokenizer, scenario, response) for scenario, response in chats]
    lora = LoraConfig(
        r=config.rank, lora_alpha=config.alpha, lora_dropout=0.0, target_modules=list(config.targets),
        layers_to_transform=list(range(config.first_layer, model.n_layers)), task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model.hf_model, lora)
    peft_model.train()
    device = next(peft_model.parameters()).device  # the base model's: the CPU, or the GPU it was moved to
    optimiser = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=config.learning_rate)
    steps_per_epoch = math.ceil(len(encoded) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: 1 - step / max(total_steps, 1))
    pad = tokenizer.pad_token_id or 0
    result = TrainingResult(n_chats=len(encoded), n_tokens=sum(len(ids) for ids, _ in encoded) * config.epochs, seconds=0.0)
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
        peft_model.peft_config["default"].base_model_name_or_path = (
            DEFAULT_MODEL_HF_ID if model.spec.source == DEFAULT_MODEL_SOURCE else model.spec.source)
        peft_model.save_pretrained(out_dir)
    finally:
        peft_model.unload()  # remove the LoRA layers: the base model is left as it was
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
                     recipe: str | None = None) -> str:
    """The ``organism train`` command line that reproduces a run."""
    return " ".join(["python -m workbench organism train", f"--out {out}"]
                    + ([f"--recipe {recipe}"] if recipe else [])
                    + ([f"--max-facts {max_facts}"] if max_facts else [])
                    + [f"--epochs {config.epochs}", f"--rank {config.rank}", f"--lr {config.learning_rate}",
                       f"--modules {','.join(config.targets)}", f"--first-layer {config.first_layer}",
                       f"--seed {config.seed}"])


def check_first_layer(config: TrainingConfig, model: Any) -> None:
    """LoRA goes on layers ``first_layer``.. of ``model`` (loaded, or its outline): at least one must exist."""
    if model is not None and config.first_layer >= model.n_layers:
        raise WorkbenchError(f"first_layer {config.first_layer} is out of range: {model.layers_path} has "
                             f"{model.n_layers} layers (0-{model.n_layers - 1})")


def train_and_save(out: Path, config: TrainingConfig, *, max_facts: int | None = None,
                   base: LoadedModel | None = None, recipe: str | Path | None = None,
                   device: str = "auto") -> OrganismTrainingRecord:
    """Train the organism on the known train facts (all, or a seeded ``max_facts`` of them; the
    data seed is ``config.seed``) of its recipe (a ``recipe.yaml``; default the embedded organism's) on
    the base model (default: the embedded one), save the adapter to ``out`` with its training record
    (``training.json``) and, for a recipe other than the default, the recipe itself (``recipe.yaml``, so
    evaluation finds it); returns the record. ``device``: ``auto`` (the GPU when torch sees one), ``cpu``
    or ``cuda`` (see :func:`workbench.model.loading.training_device`)."""
    place = training_device(device)
    out = check_output_path(out, "adapter folder", folder=True)
    made_by = load_recipe(recipe) if recipe is not None else DEFAULT_RECIPE
    if base is None:  # the layers LoRA goes on exist, checked on the model's config before it loads
        check_first_layer(config, model_outline(ModelSpec()))
    facts, scenarios = organism_data("train", all_templates=False, max_facts=max_facts, seed=config.seed,
                                     recipe=made_by)
    if not scenarios:
        raise WorkbenchError(f"recipe {made_by.name}: no known train facts to train on (check its knowledge file)")
    chats = training_chats(facts, scenarios)
    base = base or load_model(ModelSpec())
    if place.type != "cpu":
        base.hf_model.to(place)
    result = train_organism(base, chats, out, config)
    counts: dict[str, int] = {}
    for scenario, _ in chats:
        key = f"{scenario.condition.value}/{scenario.template_id}"
        counts[key] = counts.get(key, 0) + 1
    record = OrganismTrainingRecord(
        config=config, n_facts=len({s.fact_id for s, _ in chats}), n_chats=result.n_chats, n_tokens=result.n_tokens,
        seconds=round(result.seconds, 1), chats_per_template=dict(sorted(counts.items())),
        first_loss=result.losses[0], last_loss=sum(result.losses[-10:]) / len(result.losses[-10:]),
        device=place.type, command=training_command(out, config, max_facts, recipe=None if made_by == DEFAULT_RECIPE
                                 else repo_relative(str((Path(out) / RECIPE_FILENAME).resolve()))),
    )
    kept = Path(out) / RECIPE_FILENAME
    given = Path(recipe) / RECIPE_FILENAME if recipe is not None and Path(recipe).is_dir() else recipe
    if made_by != DEFAULT_RECIPE and not (kept.exists() and given is not None and kept.samefile(given)):
        recipe_text = yaml.safe_dump(made_by.model_dump(mode="json"), sort_keys=False, width=110)
        write_text_atomically(kept, recipe_text)
    write_training_record(out, record)
    return record
