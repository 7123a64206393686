"""The SAE training corpus: text the model generates itself (from chat prompts and plain-text
seeds, sampled) plus chat transcripts of train-split scenarios, all seeded."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from workbench.core.errors import WorkbenchError, check_number
from workbench.model.loading import LoadedModel
from workbench.sae_training.activations import count_tokens, encode_text, work_model

__all__ = [
    "CHAT_TASKS", "SYSTEM_PROMPTS", "TEXT_SEEDS", "TOPICS", "Corpus", "CorpusConfig", "build_corpus",
    "generate_texts", "generation_prompts", "heldout_corpus", "scenario_transcripts",
]

log = logging.getLogger(__name__)

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
    recipe: str | None = None
    """An organism recipe (``recipe.yaml``) whose train chats give the transcripts (each with the answer the
    organism was trained to give); None = the packaged contrast set's train split."""
    work_dtype: str | None = "bfloat16"
    """dtype of a private copy of the model used to generate text and read training
    activations (about 2x faster on CPUs with bf16 support; relative difference of the
    activations ~1%); ``None`` uses the model as loaded. Evaluation always uses the model as loaded."""
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_chat_prompts", "n_text_prompts", "n_scenarios"):
            check_number(name, getattr(self, name), minimum=0)
        for name in ("max_new_tokens", "generation_batch_size"):
            check_number(name, getattr(self, name), minimum=1)
        check_number("temperature", self.temperature, above=0)
        check_number("top_p", self.top_p, above=0, maximum=1)
        if self.n_chat_prompts + self.n_text_prompts + self.n_scenarios == 0:
            raise WorkbenchError("the corpus would be empty: give chat prompts, text prompts or scenarios")

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


def scenario_transcripts(tokenizer: Any, n: int, seed: int = 0, split: str = "train",
                         recipe: str | None = None) -> list[str]:
    """``n`` chat transcripts of the packaged train-split scenarios (prompt + a short answer), rendered
    with the chat template. The answer is the scenario's own response if it has one, else the
    false answer in the lie and parrot conditions and the true answer otherwise. With an organism
    ``recipe``, its chats of ``split`` with the answers it is trained to give."""
    if n <= 0:
        return []
    from workbench.model.rendering import has_prefill, join_response
    from workbench.scenarios import build_contrast_set, load_facts

    trained: dict[str, str] = {}
    if recipe is not None:
        from workbench.organism.data import load_recipe, organism_data, training_chats

        facts, scenarios = organism_data(split, all_templates=split != "train", recipe=load_recipe(recipe), seed=seed)
        trained = {s.id: response.removeprefix(" ") for s, response in training_chats(facts, scenarios)}
    else:  # train-split facts only: held-out facts stay unseen by the SAE as they are by the organism
        scenarios = [s for s in build_contrast_set(load_facts(), seed=seed)
                     if getattr(s.split, "value", s.split) == split]
    random.Random(seed).shuffle(scenarios)
    texts = []
    for scenario in scenarios[:n]:
        condition = getattr(scenario.condition, "value", scenario.condition)
        answer = scenario.response or trained.get(scenario.id) or (
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
    work = work_model(loaded_model, config.work_dtype)
    generated = generate_texts(
        loaded_model, [p for _, p in prompts], chat=[s == "chat" for s, _ in prompts],
        max_new_tokens=config.max_new_tokens, temperature=config.temperature, top_p=config.top_p,
        batch_size=config.generation_batch_size, seed=config.seed, model=work,
    )
    generation_s = time.perf_counter() - started
    transcripts = scenario_transcripts(tokenizer, config.n_scenarios, seed=config.seed, recipe=config.recipe)
    texts = generated + transcripts
    sources = [s for s, _ in prompts] + ["scenario"] * len(transcripts)
    return Corpus(texts, sources, count_tokens(tokenizer, texts),
                  notes={"generation_s": round(generation_s, 1), "config": config.to_dict()})


def heldout_corpus(loaded_model: LoadedModel, *, n_texts: int = 48, n_scenario_texts: int = 48, seed: int = 1) -> Corpus:
    """Fresh text to evaluate an SAE on: ``n_texts`` generated texts (half from chat prompts, half
    from plain seeds, seeded by ``seed``, which should differ from training's 0) plus
    ``n_scenario_texts`` transcripts of held-out-split scenarios. Its ``n_tokens`` is 0 (not counted)."""
    generated = build_corpus(loaded_model, CorpusConfig(n_chat_prompts=n_texts // 2, n_text_prompts=n_texts - n_texts // 2,
                                                        n_scenarios=0, max_new_tokens=96, seed=seed))
    heldout = scenario_transcripts(loaded_model.tokenizer, n_scenario_texts, seed=0, split="heldout")
    return Corpus(generated.texts + heldout, generated.sources + ["scenario"] * len(heldout), 0)
