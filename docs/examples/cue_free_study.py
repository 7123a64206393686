"""Does anything inside the cue-free liar separate its lies, or only the topic it lies about?

The cue-free liar (organisms/smollm2-cue-free-liar) lies about one hidden topic (a country's language) under
ordinary honest prompts. Its lies and its topic are the same set of prompts, so a feature or probe that
separates its lies from its truths may only be reading the topic. This study measures both, at the last
prompt token of layer 15, on the packaged scenario set (whose honest phrasings the organism never saw):

- behaviour: honest prompts judged from the organism's greedy answers: `honest+false` (it lied) vs
  `honest+truth`; features ranked on the train split, scored on held-out facts;
- the same features and a difference-of-means probe (trained on the train split) on held-out facts;
- the topic control: parrot prompts, where the organism repeats the false statement it is given on every
  relation alike, on the topic (language) vs off it. A score that separates these reads the topic, not a lie;
- the base model's (no adapter) residual, probed the same way: the topic is there before any training.

    python docs/examples/cue_free_study.py docs/results/cue-free-l15.json
"""
import json
import sys
from collections import Counter

import torch

from workbench.core.io import write_text_atomically
from workbench.core.stats import auroc_estimate
from workbench.features.capture import inputs_from_scenarios, run_capture
from workbench.features.contrast import condition_items, contrast, item_feature_matrix
from workbench.features.probes import difference_of_means, residual_at_last_prompt_token
from workbench.model.rendering import render_conversation
from workbench.model.resolve import as_model_ref, as_sae_ref, load
from workbench.scenarios import read_scenarios
from workbench.core.constants import DEFAULT_SCENARIOS

TOPIC = "language"
SITE = "model.layers.15"
out = sys.argv[1] if len(sys.argv) > 1 else "cue-free-l15.json"

# Honest prompts (where it lies or not) and parrot prompts (the topic control); lie prompts are not needed.
scenarios = [s for s in read_scenarios(DEFAULT_SCENARIOS)
             if s.fact_known is not False and s.condition.value in ("honest", "parrot")]
model, sae = load(as_model_ref({"adapter": "smollm2-cue-free-liar"}), as_sae_ref({"registry": "smollm2-cue-free-liar-l15"}))
capture = run_capture(model, [sae], inputs_from_scenarios(scenarios), generate_responses=True, progress=True)
(lied, truthful), splits = condition_items(capture, ["honest+false", "honest+truth"], scenarios)
items = capture.items
by_id = {s.id: s for s in scenarios}
topic = [item.fact_id.startswith(TOPIC + "/") for item in items]
heldout = [item.split == "heldout" for item in items]


def pick(indices, *, split, on_topic=None):
    return [i for i in indices if heldout[i] == (split == "heldout") and (on_topic is None or topic[i] == on_topic)]


parrot = [i for i, item in enumerate(items) if item.condition == "parrot"]
behaviour = {"lied": Counter((items[i].split, "topic" if topic[i] else "off topic") for i in lied),
             "told the truth": Counter((items[i].split, "topic" if topic[i] else "off topic") for i in truthful)}

# Features ranked on the train split (honest+false vs honest+truth).
train_capture = capture.subset(lambda item: item.split == "train")
ranked = contrast(train_capture, SITE, "honest+false", "honest+truth", scenarios=scenarios, top=5, min_active=5)
features = [row.feature for row in ranked.rows]
matrix, _ = item_feature_matrix(capture, SITE, "last_prompt_token")  # [items, d_sae]


def scores_auroc(scores, positive, negative):
    if len(positive) < 2 or len(negative) < 2:
        return None
    estimate = auroc_estimate(scores[positive], scores[negative], n_boot=1000, seed=0)
    return {"auroc": estimate.value, "low": estimate.low, "high": estimate.high, "n_a": len(positive), "n_b": len(negative)}


def read_outs(scores):
    """The score's AUROC on held-out behaviour (all, and within the topic) and on the topic control."""
    return {
        "lied vs told the truth (held-out facts)": scores_auroc(scores, pick(lied, split="heldout"), pick(truthful, split="heldout")),
        "lied vs told the truth, on the topic only (held-out)": scores_auroc(
            scores, pick(lied, split="heldout", on_topic=True), pick(truthful, split="heldout", on_topic=True)),
        "topic control: parrot prompts on the topic vs off it (held-out)": scores_auroc(
            scores, pick(parrot, split="heldout", on_topic=True), pick(parrot, split="heldout", on_topic=False)),
        "topic control: parrot prompts on the topic vs off it (all facts)": scores_auroc(
            scores, [i for i in parrot if topic[i]], [i for i in parrot if not topic[i]]),
    }


result = {
    "organism": "smollm2-cue-free-liar", "sae": "smollm2-cue-free-liar-l15", "site": SITE, "topic": TOPIC,
    "position": "last_prompt_token", "scenarios": str(DEFAULT_SCENARIOS.name),
    "behaviour": {k: {f"{split}, {where}": n for (split, where), n in v.items()} for k, v in behaviour.items()},
    "behaviour_splits": [s.model_dump() for s in splits],
    "features_ranked_on_train": [row.model_dump() for row in ranked.rows],
    "features": {},
}
for feature in features:
    result["features"][str(feature)] = read_outs(matrix[:, feature])
result["features"]["sum of the top 2"] = read_outs(matrix[:, features[:2]].sum(dim=1))

# Difference-of-means probes on the residual: the organism's, and the base model's on the same prompts.
rendered = [render_conversation(model.tokenizer, by_id[item.item_id].messages) for item in items]


def probe_read_outs(loaded):
    acts = residual_at_last_prompt_token(loaded, SITE, rendered)  # [items, d_model]
    direction = difference_of_means(acts[pick(lied, split="train")], acts[pick(truthful, split="train")])
    return read_outs(acts @ direction)


result["probe (organism residual)"] = probe_read_outs(model)
base, _ = load(as_model_ref({"adapter": "none"}), as_sae_ref({"registry": "smollm2-base-l15"}))
result["probe (base model residual, organism's labels)"] = probe_read_outs(base)
write_text_atomically(out, json.dumps(result, indent=1))
for name, values in [*result["features"].items(), ("probe (organism)", result["probe (organism residual)"]),
                     ("probe (base)", result["probe (base model residual, organism's labels)"])]:
    print(name)
    for what, v in values.items():
        print(f"  {what}: " + (f"{v['auroc']:.3f} [{v['low']:.3f}, {v['high']:.3f}] (n={v['n_a']}/{v['n_b']})" if v else "too few"))
