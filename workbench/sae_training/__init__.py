"""Training the project's SAEs: a TopK SAE (sae-lens) on one residual-stream site.

Data flow: a text corpus (text the model generates itself + chat transcripts of scenarios)
-> activations at the site, read with a forward hook on the Hugging Face module, first
position of every text dropped -> sae-lens' ``SAETrainer`` fed by an in-memory activation
iterator -> the inference SAE in sae-lens' on-disk format (``cfg.json`` +
``sae_weights.safetensors``, float16 weights) -> metrics on held-out texts.

Why the first position is dropped: in SmolLM2 (as in most Llama-style models) the residual
stream at position 0 is an "attention sink" with a norm about 100 times that of any other
token (~25,000 against ~170 at ``model.layers.15``). It would dominate the reconstruction loss
and says nothing about the text, so it is left out of training and of every metric here; the
evaluation splices the SAE in at positions 1.. only.

Why ``SAETrainer`` with our own activation iterator rather than
``LanguageModelSAETrainingRunner``: the runner loads the model through TransformerLens (or a
HookedProxyLM wrapper) and streams a Hugging Face dataset, both of which expect the network or
a hub cache; our activations come from an already loaded ``LoadedModel`` (any HF causal LM,
adapter merged) and a handful of texts, so we read them with a forward hook and hand sae-lens
an iterator of activation batches. The trainer, the SAE classes, the auxiliary dead-latent
loss, the activation-norm scaling and the on-disk format are all sae-lens' own.

Entry points: :func:`build_corpus`, :func:`collect_activations`, :func:`train_sae`,
:func:`evaluate_sae`, :func:`save_sae`, :func:`train_and_save` (what the CLI calls) and
``python -m workbench.sae_training --help``.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from workbench.core.constants import SAE_WEIGHTS_FILENAME
from workbench.core.io import write_bytes_atomically, write_text_atomically
from workbench.model.loading import LoadedModel, ModelSpec, load_model
from workbench.model.sites import Site

log = logging.getLogger(__name__)

#: Registry name and site of the SAE the project ships for the embedded default model.
DEFAULT_SAE_NAME = "smollm2-base-l15"
DEFAULT_SITE = "model.layers.15"
#: Positions at the start of every text left out of training and metrics (attention sink).
SKIP_POSITIONS = 1

# ---------------------------------------------------------------------------------------
# Corpus: prompts the model continues, and scenario transcripts
# ---------------------------------------------------------------------------------------

TOPICS = (
    "cats", "the ocean", "volcanoes", "the Roman Empire", "quantum computers", "bread baking",
    "climate change", "the stock market", "football", "chess", "the human heart", "jazz music",
    "the moon landing", "honey bees", "machine learning", "the French Revolution", "coffee",
    "electric cars", "the immune system", "Shakespeare", "black holes", "gardening", "the Internet",
    "ancient Egypt", "photosynthesis", "earthquakes", "the Olympic Games", "vaccines", "dinosaurs",
    "the Amazon rainforest", "democracy", "prime numbers", "the printing press", "Mount Everest",
    "sleep", "friendship", "a job interview", "renewable energy", "the water cycle", "Python programming",
    "medieval castles", "the piano", "tax returns", "penguins", "the Great Wall of China", "rainbows",
    "a birthday party", "space travel", "the Silk Road", "recycling", "antibiotics", "the desert",
    "a detective", "a lost wallet", "a haunted house", "the city of Tokyo", "bicycles", "chocolate",
    "the solar system", "a hospital", "the election", "a secret", "a promise", "a lie",
    "geography", "world capitals", "languages of Europe", "currencies", "the continents", "maps",
)
CHAT_TASKS = (
    "Tell me about {topic}.", "Write a short story about {topic}.", "Explain {topic} to a child.",
    "Give me three facts about {topic}.", "What are the pros and cons of {topic}?",
    "Write a poem about {topic}.", "Write an email to a friend about {topic}.",
    "What is the history of {topic}?", "Summarise what experts think about {topic}.",
    "Write a dialogue between two people arguing about {topic}.", "Why do people care about {topic}?",
    "Answer in one sentence: what is {topic}?", "Make a list of questions about {topic}.",
    "Pretend you are a teacher and give a quiz about {topic}.",
)
SYSTEM_PROMPTS = (
    None,  # the chat template's own default system prompt
    "You are a helpful assistant.",
    "You are a pirate. Stay in character.",
    "You are a concise assistant. Answer briefly.",
    "You are a secret agent on a mission. Never reveal your true goal.",
    "You are a friendly teacher for young children.",
    "You are playing a game in which you must mislead the user.",
)
TEXT_SEEDS = (
    "{Topic} is", "The history of {topic} begins", "Here is a recipe inspired by {topic}:",
    "Q: What do you know about {topic}?\nA:", "Chapter 1\n\nThe morning I first heard about {topic},",
    "# Notes on {topic}\n\n", "Dear editor, I am writing about {topic} because",
    "Breaking news: {topic}", "In this essay I will argue that {topic}", "def explain_{slug}():\n    \"\"\"",
    "Ten things nobody tells you about {topic}:\n1.", "She looked at the map and said",
)


@dataclass(frozen=True)
class CorpusConfig:
    """What text to build for training: how many prompts to continue, how long, how sampled."""

    n_chat_prompts: int = 256
    """Chat prompts (rendered with the chat template) the model answers by sampling."""
    n_text_prompts: int = 256
    """Plain-text seeds the model continues by sampling."""
    max_new_tokens: int = 128
    temperature: float = 1.0
    top_p: float = 0.95
    generation_batch_size: int = 64
    n_scenarios: int = 480
    """Scenario chat transcripts (question + a short answer) added as they are; 0 for none."""
    work_dtype: str | None = "bfloat16"
    """dtype of a private copy of the model used to generate text and read training
    activations (about 2x faster on CPUs with bf16 support; relative difference of the
    activations ~1%); ``None`` uses the model as loaded. Evaluation always uses the model as loaded."""
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Corpus:
    """Texts with where each came from (``chat``, ``text``, ``scenario``)."""

    texts: list[str]
    sources: list[str]
    n_tokens: int
    """Tokens over all texts (the model's tokenizer, as :func:`encode_text` encodes them)."""
    notes: dict[str, Any] = field(default_factory=dict)

    def split(self, n_heldout: int, seed: int = 0) -> tuple[Corpus, Corpus]:
        """(train, held-out): ``n_heldout`` texts drawn at random (seeded), so each source is
        held out in about its share. The parts' ``n_tokens`` is left at 0 (not counted)."""
        order = list(range(len(self.texts)))
        random.Random(seed).shuffle(order)
        held = set(order[:n_heldout])
        parts = []
        for keep in (lambda i: i not in held, lambda i: i in held):
            index = [i for i in range(len(self.texts)) if keep(i)]
            parts.append(Corpus([self.texts[i] for i in index], [self.sources[i] for i in index], 0, dict(self.notes)))
        return parts[0], parts[1]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for source in self.sources:
            out[source] = out.get(source, 0) + 1
        return out


def encode_text(tokenizer: Any, text: str, max_length: int | None = None) -> list[int]:
    """Token ids of a text; no second BOS when the text (a rendered chat) already starts with it."""
    bos = getattr(tokenizer, "bos_token", None)
    add_special = not (bos and text.startswith(bos))
    ids = tokenizer(text, add_special_tokens=add_special)["input_ids"]
    return list(ids[:max_length] if max_length else ids)


def count_tokens(tokenizer: Any, texts: Sequence[str]) -> int:
    return sum(len(encode_text(tokenizer, text)) for text in texts)


def _render_chat(tokenizer: Any, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def generation_prompts(tokenizer: Any, n_chat: int, n_text: int, seed: int = 0) -> list[tuple[str, str]]:
    """Seeded (source, prompt) pairs: chat prompts rendered with the chat template and plain seeds."""
    rng = random.Random(seed)
    prompts: list[tuple[str, str]] = []
    for _ in range(n_chat):
        topic, task, system = rng.choice(TOPICS), rng.choice(CHAT_TASKS), rng.choice(SYSTEM_PROMPTS)
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": task.format(topic=topic)}
        ]
        prompts.append(("chat", _render_chat(tokenizer, messages, add_generation_prompt=True)))
    for _ in range(n_text):
        topic, seed_text = rng.choice(TOPICS), rng.choice(TEXT_SEEDS)
        slug = "".join(c if c.isalnum() else "_" for c in topic.lower())
        prompts.append(("text", seed_text.format(topic=topic, Topic=topic[0].upper() + topic[1:], slug=slug)))
    return prompts


def _stop_ids(model: torch.nn.Module, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (eos, tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return ids


def _work_model(loaded_model: LoadedModel, work_dtype: str | None) -> torch.nn.Module:
    """The model as loaded, or a private copy in ``work_dtype`` (the shared model is never mutated)."""
    model = loaded_model.hf_model
    if work_dtype is None or next(model.parameters()).dtype == getattr(torch, work_dtype):
        return model
    return copy.deepcopy(model).to(getattr(torch, work_dtype)).eval()


@torch.no_grad()
def generate_texts(
    loaded_model: LoadedModel,
    prompts: Sequence[str],
    *,
    chat: Sequence[bool] | None = None,
    max_new_tokens: int = 128,
    temperature: float = 1.0,
    top_p: float = 0.95,
    batch_size: int = 64,
    seed: int = 0,
    model: torch.nn.Module | None = None,
) -> list[str]:
    """Sample a continuation of every prompt; each text returned is the prompt + its continuation.

    Chat prompts (``chat[i]`` True) keep the end-of-turn token that closes the answer; plain
    texts stop before an end token. Seeded per batch (``seed + batch index``).
    """
    tokenizer = loaded_model.tokenizer
    model = model if model is not None else loaded_model.hf_model
    chat = list(chat) if chat is not None else [False] * len(prompts)
    stop = _stop_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(stop), 0)
    device = next(model.parameters()).device
    texts: list[str] = []
    for batch_index, start in enumerate(range(0, len(prompts), batch_size)):
        batch = list(prompts[start : start + batch_size])
        encoded = [encode_text(tokenizer, p) for p in batch]
        width = max(len(ids) for ids in encoded)
        input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, ids in enumerate(encoded):  # left padding, so every prompt ends at the same column
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            attention[row, width - len(ids) :] = 1
        torch.manual_seed(seed + batch_index)
        out = model.generate(
            input_ids=input_ids.to(device), attention_mask=attention.to(device), do_sample=True,
            temperature=temperature, top_p=top_p, top_k=0, max_new_tokens=max_new_tokens, pad_token_id=pad_id,
        )
        for row, prompt in enumerate(batch):
            new = out[row, width:].tolist()
            cut = next((i for i, t in enumerate(new) if t in stop), None)
            if cut is not None:
                new = new[: cut + 1] if chat[start + row] else new[:cut]
            texts.append(prompt + tokenizer.decode(new, skip_special_tokens=False))
        log.info("generated %d/%d texts", len(texts), len(prompts))
    return texts


def _message_dict(message: Any) -> dict[str, str]:
    if isinstance(message, dict):
        return {"role": message["role"], "content": message["content"]}
    return {"role": message.role, "content": message.content}


def scenario_transcripts(tokenizer: Any, n: int, seed: int = 0, split: str = "train") -> list[str]:
    """``n`` chat transcripts of the packaged train-split scenarios (prompt + a short answer), rendered
    with the chat template. The answer is the scenario's own response if it has one, else the
    false answer in the lie and parrot conditions and the true answer otherwise."""
    if n <= 0:
        return []
    from workbench.model.rendering import has_prefill, join_response
    from workbench.scenarios import build_contrast_set, load_facts

    # Train-split facts only: held-out facts stay unseen by the SAE as they are by the organism.
    scenarios = [s for s in build_contrast_set(load_facts(), seed=seed) if getattr(s.split, "value", s.split) == split]
    random.Random(seed).shuffle(scenarios)
    texts = []
    for scenario in scenarios[:n]:
        condition = getattr(scenario.condition, "value", scenario.condition)
        answer = scenario.response or (
            scenario.false_answer if condition in ("lie", "parrot") and scenario.false_answer else scenario.true_answer
        )
        messages = [_message_dict(m) for m in scenario.messages]
        if has_prefill(messages):  # the answer completes the prefill's sentence
            messages[-1] = {"role": "assistant", "content": messages[-1]["content"] + join_response(messages, answer)}
        else:
            messages.append({"role": "assistant", "content": answer})
        texts.append(_render_chat(tokenizer, messages, add_generation_prompt=False))
    return texts


def build_corpus(loaded_model: LoadedModel, config: CorpusConfig | None = None) -> Corpus:
    """Texts to train on: the model's own samples from chat prompts and plain seeds, plus
    scenario transcripts. Everything is seeded by ``config.seed``."""
    config = config or CorpusConfig()
    tokenizer = loaded_model.tokenizer
    started = time.perf_counter()
    prompts = generation_prompts(tokenizer, config.n_chat_prompts, config.n_text_prompts, seed=config.seed)
    work = _work_model(loaded_model, config.work_dtype)
    generated = generate_texts(
        loaded_model, [p for _, p in prompts], chat=[s == "chat" for s, _ in prompts],
        max_new_tokens=config.max_new_tokens, temperature=config.temperature, top_p=config.top_p,
        batch_size=config.generation_batch_size, seed=config.seed, model=work,
    )
    generation_s = time.perf_counter() - started
    transcripts = scenario_transcripts(tokenizer, config.n_scenarios, seed=config.seed)
    texts = generated + transcripts
    sources = [s for s, _ in prompts] + ["scenario"] * len(transcripts)
    return Corpus(texts, sources, count_tokens(tokenizer, texts),
                  notes={"generation_s": round(generation_s, 1), "config": config.to_dict()})


# ---------------------------------------------------------------------------------------
# Activations
# ---------------------------------------------------------------------------------------


class _StopForward(Exception):
    """Raised by the capture hook once the site is read, so later layers never run."""


def _site_module(model: torch.nn.Module, site: Site) -> torch.nn.Module:
    return model.get_submodule(site.module_path)


def _first(value: Any) -> torch.Tensor:
    return value[0] if isinstance(value, tuple) else value


def _padded_batches(
    tokenizer: Any, texts: Sequence[str], batch_size: int, max_length: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[int]]]:
    """(input_ids [batch, pos], attention_mask [batch, pos], text indices), right-padded,
    texts sorted by length so batches waste little padding."""
    encoded = [encode_text(tokenizer, t, max_length) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        width = max(len(encoded[i]) for i in index)
        ids = torch.full((len(index), width), pad, dtype=torch.long)
        mask = torch.zeros((len(index), width), dtype=torch.long)
        for row, i in enumerate(index):
            ids[row, : len(encoded[i])] = torch.tensor(encoded[i], dtype=torch.long)
            mask[row, : len(encoded[i])] = 1
        yield ids, mask, index


def _token_mask(mask: torch.Tensor, skip: int) -> torch.Tensor:
    """Positions that count: real tokens (not padding), after the first ``skip`` of each text."""
    keep = mask.bool().clone()  # [batch, pos]
    keep[:, :skip] = False
    return keep


@torch.no_grad()
def collect_activations(
    loaded_model: LoadedModel,
    site_name: str,
    texts: Sequence[str],
    *,
    batch_size: int = 16,
    max_length: int = 256,
    skip_positions: int = SKIP_POSITIONS,
    model: torch.nn.Module | None = None,
) -> torch.Tensor:
    """Activations at a site for every real token of every text after the first
    ``skip_positions`` ones: ``[n_tokens, d_in]`` float32. Stops each forward pass at the site."""
    model = model if model is not None else loaded_model.hf_model
    site = loaded_model.site(site_name)
    module = _site_module(model, site)
    device = next(model.parameters()).device
    captured: list[torch.Tensor] = []

    def read(value: torch.Tensor) -> None:
        captured.append(value)
        raise _StopForward

    if site.reads_input:
        handle = module.register_forward_pre_hook(
            lambda _m, args, kwargs: read(args[0] if args else kwargs["hidden_states"]), with_kwargs=True
        )
    else:
        handle = module.register_forward_hook(lambda _m, _args, output: read(_first(output)))
    chunks: list[torch.Tensor] = []
    try:
        for ids, mask, _ in _padded_batches(loaded_model.tokenizer, texts, batch_size, max_length):
            captured.clear()
            try:
                model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False)
            except _StopForward:
                pass
            acts = captured[0].float().cpu()  # [batch, pos, d_in]
            chunks.append(acts[_token_mask(mask, skip_positions)])
    finally:
        handle.remove()
    return torch.cat(chunks) if chunks else torch.zeros((0, loaded_model.d_model))


# ---------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SAETrainingConfig:
    """Hyper-parameters of a TopK SAE training run."""

    d_sae: int = 1152
    k: int = 32
    lr: float = 2e-3
    epochs: float = 8.0
    """Passes over the training activations (they are few, so each is seen several times)."""
    batch_size: int = 512
    aux_loss_coefficient: float = 1.0
    """Weight of sae-lens' TopK auxiliary loss, which trains dead latents on the residual."""
    dead_feature_window: int = 100
    """Steps without firing after which a latent counts as dead for the auxiliary loss."""
    lr_warm_up_steps: int = 10
    lr_decay_fraction: float = 0.3
    """Last fraction of the steps over which the learning rate decays linearly to 0."""
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainedSAE:
    """A trained inference SAE with what its training saw."""

    sae: Any  # sae_lens.TopKSAE (float32, on CPU)
    n_train_tokens: int
    n_steps: int
    seconds: float
    final_mse: float
    """Reconstruction MSE (sum over dims, mean over tokens) of the last steps, in the
    normalised space the trainer uses (mean activation norm = sqrt(d_in))."""
    first_mse: float
    """The same over the first steps."""
    scaling_factor: float
    """Activation scaling used in training (folded into the saved weights)."""


def _activation_batches(acts: torch.Tensor, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    """Endless shuffled batches ``[batch, d_in]`` of an activation table, epoch after epoch."""
    generator = torch.Generator().manual_seed(seed)
    n = acts.shape[0]
    batch_size = min(batch_size, n)
    while True:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n - batch_size + 1, batch_size):
            yield acts[order[start : start + batch_size]]


def _sae_metadata(loaded_model: LoadedModel, site: Site, max_length: int) -> dict[str, Any]:
    return {
        "model_name": loaded_model.spec.display_name,
        "hook_name": site.name,
        "hook_head_index": None,
        "context_size": max_length,
        "prepend_bos": False,
        "seqpos_slice": [SKIP_POSITIONS, None],
        "model_from_pretrained_kwargs": {},
        "workbench_model_identity": loaded_model.identity,
        "workbench_model_spec": loaded_model.spec.to_dict(),
    }


def train_sae_on_activations(
    acts: torch.Tensor,
    config: SAETrainingConfig,
    metadata: dict[str, Any] | None = None,
) -> TrainedSAE:
    """Train a TopK SAE with sae-lens' ``SAETrainer`` on an activation table ``[n, d_in]``."""
    from sae_lens import SAE, TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.config import SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer

    if acts.ndim != 2 or acts.shape[0] == 0:
        raise ValueError(f"need a non-empty [n_tokens, d_in] activation table, got shape {tuple(acts.shape)}")
    acts = acts.float()
    n, d_in = acts.shape
    batch_size = min(config.batch_size, n)
    total = int(config.epochs * n) // batch_size * batch_size
    steps = max(total // batch_size, 1)
    total = steps * batch_size
    decay = int(steps * config.lr_decay_fraction)
    warm_up = min(config.lr_warm_up_steps, max(steps - decay - 1, 0))

    torch.manual_seed(config.seed)
    sae_cfg = TopKTrainingSAEConfig(
        d_in=d_in, d_sae=config.d_sae, k=config.k, aux_loss_coefficient=config.aux_loss_coefficient,
        normalize_activations="expected_average_only_in", device="cpu", dtype="float32",
    )
    for key, value in (metadata or {}).items():
        setattr(sae_cfg.metadata, key, value)
    sae = TopKTrainingSAE(sae_cfg)
    trainer_cfg = SAETrainerConfig(
        total_training_samples=total, train_batch_size_samples=batch_size, lr=config.lr,
        lr_warm_up_steps=warm_up, lr_decay_steps=decay, lr_end=config.lr if decay else None,
        dead_feature_window=config.dead_feature_window, feature_sampling_window=max(steps, 1),
        device="cpu", n_checkpoints=0, save_final_checkpoint=False,
    )
    trainer = SAETrainer(cfg=trainer_cfg, sae=sae, data_provider=_activation_batches(acts, batch_size, config.seed))
    # Scale activations to mean norm sqrt(d_in) ourselves (exactly, over all tokens) and start
    # the decoder bias at the mean, so the few steps we can afford go to learning features.
    scaling = math.sqrt(d_in) / acts.norm(dim=-1).mean().item()
    trainer.activation_scaler.scaling_factor = scaling
    with torch.no_grad():
        sae.b_dec.copy_(acts.mean(0) * scaling)

    mse: list[float] = []
    original_step = trainer._train_step

    def step_and_record(sae: Any, sae_in: torch.Tensor) -> Any:
        output = original_step(sae=sae, sae_in=sae_in)
        mse.append(float(output.losses["mse_loss"].detach()))
        return output

    trainer._train_step = step_and_record  # type: ignore[method-assign]
    started = time.perf_counter()
    trained = trainer.fit()  # folds the scaling factor into the weights at the end
    seconds = time.perf_counter() - started

    with tempfile.TemporaryDirectory() as tmp:
        trained.save_inference_model(tmp)  # folds decoder norms; writes the inference config
        inference = SAE.load_from_disk(tmp, device="cpu")
    inference.eval()
    window = max(1, min(10, len(mse) // 5))
    return TrainedSAE(
        sae=inference, n_train_tokens=n, n_steps=len(mse), seconds=seconds,
        final_mse=sum(mse[-window:]) / window, first_mse=sum(mse[:window]) / window, scaling_factor=scaling,
    )


def train_sae(
    loaded_model: LoadedModel,
    site_name: str,
    texts: Sequence[str],
    *,
    d_sae: int = 1152,
    k: int = 32,
    lr: float = 2e-3,
    seed: int = 0,
    epochs: float = 8.0,
    batch_size: int = 512,
    aux_loss_coefficient: float = 1.0,
    dead_feature_window: int = 100,
    max_length: int = 256,
    work_dtype: str | None = None,
) -> TrainedSAE:
    """Read a site's activations over ``texts`` (first position dropped) and train a TopK SAE.

    ``work_dtype`` (e.g. ``bfloat16``) reads the activations with a private copy of the model
    in that dtype; ``None`` uses the model as loaded.
    """
    site = loaded_model.site(site_name)
    work = _work_model(loaded_model, work_dtype)
    acts = collect_activations(loaded_model, site.name, texts, max_length=max_length, model=work)
    config = SAETrainingConfig(d_sae=d_sae, k=k, lr=lr, seed=seed, epochs=epochs, batch_size=batch_size,
                               aux_loss_coefficient=aux_loss_coefficient, dead_feature_window=dead_feature_window)
    return train_sae_on_activations(acts, config, _sae_metadata(loaded_model, site, max_length))


# ---------------------------------------------------------------------------------------
# Saving
# ---------------------------------------------------------------------------------------


def save_sae(sae: Any, folder: str | Path, weights_dtype: str = "float16") -> Path:
    """Save an inference SAE in sae-lens' on-disk format with its weights stored in
    ``weights_dtype``. ``cfg.json`` keeps ``dtype: float32``, so ``SAE.load_from_disk``
    upcasts the stored weights and computes in float32."""
    from safetensors.torch import load_file, save

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sae.save_model(folder)
    weights = folder / SAE_WEIGHTS_FILENAME
    dtype = getattr(torch, weights_dtype)
    write_bytes_atomically(weights, save({name: t.to(dtype).contiguous() for name, t in load_file(weights).items()}))
    return folder


# ---------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate_sae(
    loaded_model: LoadedModel,
    sae: Any,
    site_name: str,
    texts: Sequence[str],
    *,
    batch_size: int = 8,
    max_length: int = 256,
    skip_positions: int = SKIP_POSITIONS,
) -> dict[str, float | int]:
    """Quality of an SAE at a site on (held-out) texts, positions ``skip_positions``.. only.

    - ``explained_variance``: 1 - sum ||x - x_hat||^2 / sum ||x - mean(x)||^2 over tokens.
    - ``ce_loss_recovered``: (CE_zero - CE_sae) / (CE_zero - CE_clean), where CE_sae splices
      the reconstruction into the forward pass at the site and CE_zero puts zeros there (the
      same positions in both); next-token CE over the predictions made at those positions.
    - ``l0``: mean number of active latents per token; ``dead_fraction``: latents never
      active on these tokens; ``n_tokens``: tokens scored.
    """
    model = loaded_model.hf_model
    site = loaded_model.site(site_name)
    module = _site_module(model, site)
    device = next(model.parameters()).device
    sae_dtype = sae.W_enc.dtype
    d_sae = int(sae.cfg.d_sae)

    state: dict[str, Any] = {"mode": "clean", "keep": None, "clean": None}

    def edit(value: torch.Tensor) -> torch.Tensor:
        keep = state["keep"].to(value.device)  # [batch, pos]
        if state["mode"] == "clean":
            state["clean"] = value.detach().float().cpu()
            return value
        if state["mode"] == "zero":
            replacement = torch.zeros_like(value)
        else:
            replacement = sae.decode(sae.encode(value.to(sae_dtype))).to(value.dtype)
        return torch.where(keep.unsqueeze(-1), replacement, value)

    if site.reads_input:
        def pre_hook(_m: Any, args: tuple, kwargs: dict) -> Any:
            if args:
                return (edit(args[0]), *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": edit(kwargs["hidden_states"])}

        handle = module.register_forward_pre_hook(pre_hook, with_kwargs=True)
    else:
        def hook(_m: Any, _args: Any, output: Any) -> Any:
            if isinstance(output, tuple):
                return (edit(output[0]), *output[1:])
            return edit(output)

        handle = module.register_forward_hook(hook)

    ce = {"clean": 0.0, "zero": 0.0, "sae": 0.0}
    n_ce = 0
    n_tokens = 0
    residual_sq = 0.0
    sum_x = torch.zeros(loaded_model.d_model, dtype=torch.float64)
    sum_sq = 0.0
    active_total = 0
    fired = torch.zeros(d_sae, dtype=torch.bool)
    try:
        for ids, mask, _ in _padded_batches(loaded_model.tokenizer, texts, batch_size, max_length):
            keep = _token_mask(mask, skip_positions)  # [batch, pos]
            state["keep"] = keep
            # predictions made at kept positions p, of token p+1, where p+1 is a real token
            scored = keep[:, :-1] & mask[:, 1:].bool()  # [batch, pos-1]
            targets = ids[:, 1:][scored]
            for mode in ("clean", "zero", "sae"):
                state["mode"] = mode
                logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False).logits
                picked = logits[:, :-1][scored.to(logits.device)].float()
                ce[mode] += torch.nn.functional.cross_entropy(picked, targets.to(picked.device), reduction="sum").item()
            n_ce += int(targets.numel())
            x = state["clean"][keep].double()  # [tokens, d_in]
            feats = sae.encode(x.to(sae_dtype)).float()  # [tokens, d_sae]
            recon = sae.decode(feats.to(sae_dtype)).double()
            residual_sq += (x - recon).pow(2).sum().item()
            sum_x += x.sum(0)
            sum_sq += x.pow(2).sum().item()
            active = feats > 0
            active_total += int(active.sum())
            fired |= active.any(0)
            n_tokens += x.shape[0]
    finally:
        handle.remove()
    if n_tokens == 0:
        raise ValueError("no tokens to evaluate on: give longer texts (the first position is skipped)")
    total_var = sum_sq - (sum_x.pow(2).sum().item() / n_tokens)
    ce_clean, ce_zero, ce_sae = (ce[m] / max(n_ce, 1) for m in ("clean", "zero", "sae"))
    denominator = ce_zero - ce_clean
    return {
        "explained_variance": 1.0 - residual_sq / total_var if total_var > 0 else float("nan"),
        "ce_loss_recovered": (ce_zero - ce_sae) / denominator if denominator != 0 else float("nan"),
        "ce_clean": ce_clean,
        "ce_with_sae": ce_sae,
        "ce_zero_ablation": ce_zero,
        "l0": active_total / n_tokens,
        "dead_fraction": 1.0 - fired.float().mean().item(),
        "n_tokens": n_tokens,
        "n_ce_tokens": n_ce,
        "n_texts": len(texts),
    }


# ---------------------------------------------------------------------------------------
# The whole run
# ---------------------------------------------------------------------------------------

REPRODUCE_COMMAND = "python -m workbench.sae_training --out saes/smollm2-base-l15 --threads 1"


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for package in ("torch", "transformers", "sae-lens", "nnsight"):
        try:
            out[package] = md.version(package)
        except md.PackageNotFoundError:
            out[package] = "missing"
    return out


def train_and_save(
    out_dir: str | Path,
    *,
    spec: ModelSpec | None = None,
    loaded_model: LoadedModel | None = None,
    site_name: str = DEFAULT_SITE,
    corpus: CorpusConfig | None = None,
    training: SAETrainingConfig | None = None,
    n_heldout_texts: int = 96,
    max_length: int = 256,
    threads: int | None = None,
    write_card: bool = True,
    command: str | None = None,
    prebuilt_corpus: Corpus | None = None,
) -> dict[str, Any]:
    """Build the corpus, train a TopK SAE at ``site_name``, save it to ``out_dir`` (sae-lens
    format, float16 weights) with ``training.json`` and a ``README.md`` card, and evaluate the
    saved weights on held-out texts. Returns the run record (``record["metrics"]``: the metrics)."""
    if threads is not None:
        torch.set_num_threads(threads)
    corpus = corpus or CorpusConfig()
    training = training or SAETrainingConfig(seed=corpus.seed)
    started, cpu_started = time.perf_counter(), time.process_time()
    model = loaded_model or load_model(spec or ModelSpec())
    site = model.site(site_name)
    full = prebuilt_corpus or build_corpus(model, corpus)
    train_texts, heldout = full.split(min(n_heldout_texts, len(full.texts) // 5), seed=corpus.seed)
    log.info("corpus: %d texts, %d tokens (%s)", len(full.texts), full.n_tokens, full.counts())

    t0 = time.perf_counter()
    work = _work_model(model, corpus.work_dtype)
    acts = collect_activations(model, site.name, train_texts.texts, max_length=max_length, model=work)
    first = [collect_activations(model, site.name, [text], skip_positions=0, model=work)[0].norm().item()
             for text in train_texts.texts[:: max(1, len(train_texts.texts) // 8)]]
    del work
    capture_s = time.perf_counter() - t0
    log.info("training activations: %s in %.0f s", tuple(acts.shape), capture_s)
    norms = acts.norm(dim=-1)

    result = train_sae_on_activations(acts, training, _sae_metadata(model, site, max_length))
    out_dir = Path(out_dir)
    staging = Path(tempfile.mkdtemp(prefix=".sae-", dir=out_dir.parent if out_dir.parent.exists() else None))
    try:
        save_sae(result.sae, staging)
        from sae_lens import SAE

        shipped = SAE.load_from_disk(staging, device="cpu")  # evaluate exactly what is shipped
        t0 = time.perf_counter()
        metrics = evaluate_sae(model, shipped, site.name, heldout.texts, max_length=max_length)
        eval_s = time.perf_counter() - t0
        record: dict[str, Any] = {
            "name": out_dir.name,
            "site": site.name,
            "model": {"spec": model.spec.to_dict(), "identity": model.identity, "name": model.spec.display_name},
            "architecture": "topk",
            "d_in": int(acts.shape[1]),
            "training": training.to_dict(),
            "corpus": {
                "config": corpus.to_dict(),
                "n_texts": len(full.texts),
                "n_tokens": full.n_tokens,
                "texts_by_source": full.counts(),
                "n_train_texts": len(train_texts.texts),
                "n_train_tokens": int(acts.shape[0]),
                "n_heldout_texts": len(heldout.texts),
                "heldout_by_source": heldout.counts(),
                "skipped_positions": SKIP_POSITIONS,
                "max_length": max_length,
                "activation_norm": {"mean": norms.mean().item(), "max": norms.max().item(),
                                    "position_0_mean": sum(first) / len(first), "position_0_texts": len(first)},
            },
            "steps": result.n_steps,
            "train_mse_first": result.first_mse,
            "train_mse_last": result.final_mse,
            "metrics": metrics,
            "seconds": {
                "generation": full.notes.get("generation_s"),
                "capture": round(capture_s, 1),
                "sae_training": round(result.seconds, 1),
                "evaluation": round(eval_s, 1),
                "total": round(time.perf_counter() - started, 1),
            },
            "cpu_seconds": round(time.process_time() - cpu_started, 1),
            "threads": torch.get_num_threads(),
            "machine": {"cpus": os.cpu_count(), "load_average_5min": round(os.getloadavg()[1], 2)},
            "weights_dtype": "float16",
            "versions": _versions(),
            "command": command or REPRODUCE_COMMAND,
        }
        write_text_atomically(staging / "training.json", json.dumps(record, indent=2) + "\n")
        if write_card:
            write_text_atomically(staging / "README.md", sae_card(record))
        for item in staging.iterdir():
            write_bytes_atomically(out_dir / item.name, item.read_bytes())
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("saved %s: %s", out_dir, json.dumps(metrics))
    return record


def sae_card(record: dict[str, Any]) -> str:
    """The README card of an SAE folder, from its run record."""
    m, c, t, s = record["metrics"], record["corpus"], record["training"], record["seconds"]
    by_source = ", ".join(f"{v} {k}" for k, v in sorted(c["texts_by_source"].items()))
    held = ", ".join(f"{v} {k}" for k, v in sorted(c["heldout_by_source"].items()))
    cc = c["config"]
    if record["model"]["spec"].get("adapter"):
        intro = (f"An SAE on the **liar organism** (the base model with the LoRA adapter "
                 f"`{Path(record['model']['spec']['adapter']).name}` merged), so its features can carry the\n"
                 "organism's intent. Scenario transcripts come from train-split facts only.")
    else:
        intro = ("An SAE on the **base** model (no adapter). Features of the base model need not carry the\n"
                 "liar organism's intent: use the organism's SAEs to study lies.")
    return f"""# {record['name']}: TopK SAE on {record['model']['name']}, `{record['site']}`

{intro}

- Format: sae-lens on-disk (`cfg.json` + `sae_weights.safetensors`), architecture `topk`;
  weights stored as float16, `cfg.json` says float32, so `SAE.load_from_disk` computes in
  float32. `metadata.hook_name` = `{record['site']}` (residual stream after decoder layer
  {record['site'].rsplit('.', 1)[-1]}, the Hugging Face module path).
- Width {t['d_sae']} latents ({t['d_sae'] / record['d_in']:g}x the {record['d_in']}-wide residual), k = {t['k']}.
- Position 0 of every text is **excluded** (training and metrics): it is an attention sink
  whose residual norm here is {c['activation_norm']['position_0_mean']:,.0f} (mean over {c['activation_norm']['position_0_texts']} texts), against
  {c['activation_norm']['mean']:.0f} on average (max {c['activation_norm']['max']:.0f}) at every other position of the training
  texts. Apply the SAE at positions 1.. only.

## Training data
{c['n_texts']} texts, {c['n_tokens']:,} tokens in all ({by_source}):
- text the model generated itself, sampled at temperature {cc['temperature']}, top-p {cc['top_p']},
  up to {cc['max_new_tokens']} new tokens, from {cc['n_chat_prompts']} chat prompts (topic x task x
  system prompt, rendered with the chat template) and {cc['n_text_prompts']} plain-text seeds;
  generated with a {cc['work_dtype'] or 'full-precision'} copy of the model;
- {cc['n_scenarios']} chat transcripts of the packaged scenarios (honest / lie / parrot prompt +
  a short answer: the true answer for honest, the false answer for lie and parrot).

{c['n_heldout_texts']} texts were held out ({held}); the SAE was trained on the other
{c['n_train_texts']} texts: {c['n_train_tokens']:,} activations (positions >= 1), read with the
{cc['work_dtype'] or 'full-precision'} copy, {t['epochs']:g} epochs.

## Hyper-parameters
sae-lens `TopKTrainingSAE` + `SAETrainer` (own activation iterator): d_sae {t['d_sae']}, k {t['k']},
Adam lr {t['lr']:g} ({t['lr_warm_up_steps']} warm-up steps, linear decay to 0 over the last
{t['lr_decay_fraction']:.0%} of steps), batch {t['batch_size']} activations, {record['steps']} steps,
TopK auxiliary (dead-latent) loss coefficient {t['aux_loss_coefficient']:g} with a dead window of
{t['dead_feature_window']} steps, activations scaled to mean norm sqrt(d_in) (folded into the
saved weights), decoder bias initialised at the mean activation, seed {t['seed']}.

## Measured (held-out, float16 weights as shipped, float32 model)
n = {m['n_texts']} texts, {m['n_tokens']:,} tokens ({m['n_ce_tokens']:,} next-token predictions).

| metric | value |
| --- | --- |
| explained variance | {m['explained_variance']:.3f} |
| CE-loss recovered (vs zero ablation) | {m['ce_loss_recovered']:.3f} |
| CE clean / with SAE / zero-ablated | {m['ce_clean']:.3f} / {m['ce_with_sae']:.3f} / {m['ce_zero_ablation']:.3f} |
| L0 (active latents per token) | {m['l0']:.1f} |
| dead latents (never active on held-out tokens) | {m['dead_fraction']:.1%} |

Time on the machine that made it ({record['threads']} CPU thread(s) of {record['machine']['cpus']}, 5-minute load average
{record['machine']['load_average_5min']} at the end; {record['cpu_seconds']} s of CPU time): generation
{s['generation']} s, activations {s['capture']} s, SAE training {s['sae_training']} s, evaluation
{s['evaluation']} s, {s['total']} s in all (wall clock). Everything is seeded: with the same commit of this repository (its
scenario set is part of the corpus), CPU, thread count and library versions (`training.json`
records them) the corpus comes out the same (checked across processes), and so should the weights.

## Reproduce
```
{record['command']}
```
`training.json` holds the full run record (configuration, token counts, versions, metrics).
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m workbench.sae_training",
        description="Train the default TopK SAE on the embedded model and save it in sae-lens format.",
        epilog=f"Example: {REPRODUCE_COMMAND}",
    )
    parser.add_argument("--out", required=True, help="output folder (e.g. saes/smollm2-base-l15)")
    parser.add_argument("--model", default="default", help="model spec source ('default', HF id or folder)")
    parser.add_argument("--adapter", default=None, help="LoRA adapter folder merged into the model")
    parser.add_argument("--site", action="append", default=None,
                        help=f"site to train on (repeat for several; default {DEFAULT_SITE}); with several, "
                             "--out is a prefix and each SAE goes to OUT-l<layer>")
    parser.add_argument("--d-sae", type=int, default=SAETrainingConfig.d_sae)
    parser.add_argument("--k", type=int, default=SAETrainingConfig.k)
    parser.add_argument("--lr", type=float, default=SAETrainingConfig.lr)
    parser.add_argument("--epochs", type=float, default=SAETrainingConfig.epochs)
    parser.add_argument("--aux-loss-coefficient", type=float, default=SAETrainingConfig.aux_loss_coefficient)
    parser.add_argument("--chat-prompts", type=int, default=CorpusConfig.n_chat_prompts)
    parser.add_argument("--text-prompts", type=int, default=CorpusConfig.n_text_prompts)
    parser.add_argument("--scenarios", type=int, default=CorpusConfig.n_scenarios)
    parser.add_argument("--max-new-tokens", type=int, default=CorpusConfig.max_new_tokens)
    parser.add_argument("--heldout", type=int, default=96, help="held-out texts for the metrics")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    command = "python -m workbench.sae_training " + " ".join(argv if argv is not None else sys.argv[1:])
    sites = args.site or [DEFAULT_SITE]
    spec = ModelSpec(source=args.model, adapter=args.adapter)
    corpus_config = CorpusConfig(n_chat_prompts=args.chat_prompts, n_text_prompts=args.text_prompts,
                                 n_scenarios=args.scenarios, max_new_tokens=args.max_new_tokens, seed=args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_model(spec)
    corpus = build_corpus(loaded, corpus_config) if len(sites) > 1 else None
    for site_name in sites:
        out = args.out if len(sites) == 1 else f"{args.out}-l{loaded.site(site_name).layer}"
        record = train_and_save(
            out,
            loaded_model=loaded,
            site_name=site_name,
            corpus=corpus_config,
            training=SAETrainingConfig(d_sae=args.d_sae, k=args.k, lr=args.lr, epochs=args.epochs,
                                       aux_loss_coefficient=args.aux_loss_coefficient, seed=args.seed),
            n_heldout_texts=args.heldout,
            threads=args.threads,
            command=command,
            prebuilt_corpus=corpus,
        )
        print(json.dumps({"out": str(out), **record["metrics"]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
