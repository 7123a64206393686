"""Bad input on the command line, as one table: each row is a mistake a user can make, the words the
one line it prints must hold, and the exit code 2. Every row runs the real entry point
(``workbench.cli.main``) on the tiny model, SAE and scenario file, with spies on the model loader and on
every forward pass: a row passes only if the error came before anything loaded or ran. A new option or
field joins the table with its bad values.

The embedded default model is never loaded here: its config is read from its dequantised cache, which
these tests point at the tiny model's folder (3 layers of width 64).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import build_sae
from workbench import cli
from workbench.core.constants import REPO_ROOT

M = ["--model", "{model}"]
S = ["--sae-path", "{sae}"]
D = ["--scenarios", "{scenarios}"]
TINY = [*M, *S, *D]
X = ["experiment", *TINY]

ROWS: list[tuple[str, list[str], str]] = [
    # ---------------------------------------------------------------- files a command reads
    ("scenario file missing", ["capture", *M, *S, "--scenarios", "/nonexistent.jsonl"],
     "no scenario file at /nonexistent.jsonl"),
    ("scenario file is a folder", ["capture", *M, *S, "--scenarios", "{folder}"], "is a folder, not a scenario file"),
    ("scenario file not UTF-8", ["capture", *M, *S, "--scenarios", "{latin1}"],
     "is not UTF-8 text (byte 3, line 1): save it as UTF-8"),
    ("scenario file bad line", ["capture", *M, *S, "--scenarios", "{bad_line}"],
     "bad.jsonl line 2: invalid JSON: Expecting value (column 1); nothing was loaded"),
    ("text file missing", ["capture", *TINY, "--texts", "/nonexistent.txt"], "no text file at /nonexistent.txt"),
    ("text file not UTF-8", ["capture", *TINY, "--texts", "{latin1}"], "is not UTF-8 text"),
    # ---------------------------------------------------------------- scale
    ("scale: unknown key in a model spec", ["scale", "--models", "{model},colour=red", *D, "--out", "{out}/s"],
     "unknown key 'colour'"),
    ("scale: second model folder missing", ["scale", "--models", "{model}", "./no/such/model", *D, "--out", "{out}/s"],
     "no model folder at ./no/such/model"),
    ("scale: SAE folder missing", ["scale", "--models", "{model},sae-path=/no/such/sae", *D, "--out", "{out}/s"],
     "/no/such/sae"),
    ("scale: depth past the last layer", ["scale", "--models", "{model}", *D, "--out", "{out}/s", "--depths", "0,2"],
     "depth 2.0 is not a fraction of depth between 0 and 1"),
    ("scale: depths not numbers", ["scale", "--models", "{model}", *D, "--out", "{out}/s", "--depths", "a,b"],
     "--depths 'a,b': give comma-separated numbers between 0 and 1"),
    ("scale: scenario file missing", ["scale", "--models", "{model}", "--scenarios", "/nonexistent.jsonl", "--out",
                                      "{out}/s"], "no scenario file at /nonexistent.jsonl"),
    ("scale: two models with one label", ["scale", "--models", "{model},label=a", "{model},label=a", *D, "--out",
                                          "{out}/s"], "two models share a label"),
    # ---------------------------------------------------------------- behaviour
    ("behaviour: scenario file missing", ["behaviour", *M, "--scenarios", "/nonexistent.jsonl"],
     "no scenario file at /nonexistent.jsonl"),
    ("behaviour: unknown split", ["behaviour", *M, *D, "--split", "test"], "unknown split 'test'; choose train or heldout"),
    ("behaviour: model folder missing", ["behaviour", "--model", "./no/such/model", *D],
     "no model folder at ./no/such/model"),
    ("behaviour: output into a file's folder", ["behaviour", *M, *D, "--out", "{model}/config.json/x.json"],
     "config.json"),
    # ---------------------------------------------------------------- the model
    ("model is a file", ["capture", "--model", "{model}/config.json", *S, *D],
     "config.json is a file, not a model folder: give the folder that holds config.json"),
    ("model is a GGUF file", ["capture", "--model", "{gguf_dir}/model.gguf", *S, *D],
     "model.gguf is a GGUF file, not a model folder: give its folder as the model and its name as the GGUF file"),
    ("model folder missing", ["capture", "--model", "./no/such/model", *S, *D], "no model folder at ./no/such/model"),
    ("model folder empty", ["capture", "--model", "{folder}", *S, *D],
     "is not a model folder: it has no config.json and no .gguf file"),
    ("GGUF folder without a file named", ["capture", "--model", "{gguf_dir}", *S, *D],
     "holds GGUF file(s) (model.gguf) but no config.json: name the one to load as the GGUF file"),
    ("model config broken", ["capture", "--model", "{broken_model}", *S, *D], "cannot read the model's config.json"),
    ("GGUF file with the default model", ["capture", "--gguf-file", "model.gguf", *D],
     "GGUF file 'model.gguf' given with the default model, which has its own"),
    ("GGUF file the folder lacks", ["capture", *M, "--gguf-file", "model.gguf", *S, *D],
     "no GGUF file model.gguf in {model} (the folder holds config.json: a transformers model, drop the GGUF file)"),
    ("GGUF file that is not GGUF", ["capture", *M, "--gguf-file", "config.json", *S, *D],
     "config.json is not a GGUF file"),
    ("adapter missing", ["capture", *M, "--adapter", "/nonexistent", *S, *D], "no LoRA adapter at /nonexistent"),
    ("adapter is a file", ["capture", *M, "--adapter", "{model}/config.json", *S, *D],
     "config.json is a file, not a LoRA adapter"),
    # ---------------------------------------------------------------- the SAE
    ("SAE folder missing", ["capture", *M, "--sae-path", "/nonexistent", *D],
     "no SAE at /nonexistent: missing cfg.json, sae_weights.safetensors"),
    ("SAE folder is a file", ["capture", *M, "--sae-path", "{sae}/cfg.json", *D], "is a file, not an SAE folder"),
    ("SAE config broken", ["capture", *M, "--sae-path", "{bad_cfg}", *D], "cfg.json is not valid JSON (line 1)"),
    ("SAE width does not fit", ["capture", *M, "--sae-path", "{narrow}", *D],
     "SAE expects d_in=32 but model.layers.1 outputs 64: pick an SAE trained on this model"),
    ("SAE site not on the model", ["capture", *M, "--sae-path", "{deep}", *D],
     "site 'blocks.9.hook_resid_post' does not exist on LlamaForCausalLM: model.layers has 3 layers (0-2)"),
    ("SAE not in the registry", ["capture", *M, "--sae", "nope", *D], "no SAE named 'nope' in the registry"),
    ("SAE named twice", ["capture", *M, "--sae", "x", *S, *D], "the SAE is named 2 ways (registry, path)"),
    ("release without id", ["capture", *M, "--sae-release", "gpt2-small-res-jb", *D], "release needs an id too"),
    ("unknown release", ["capture", *M, "--sae-release", "no-such-release", "--sae-id", "x", *D],
     "no sae-lens release 'no-such-release'"),
    ("batch size 0", ["capture", *TINY, "--batch-size", "0"], "Invalid value for '--batch-size'"),
    # ---------------------------------------------------------------- feature
    ("feature: site with no such layer", ["feature", "model.layers.99", "5", *TINY],
     "site 'model.layers.99' does not exist on LlamaForCausalLM: model.layers has 3 layers (0-2)"),
    ("feature: another site than the SAE's", ["feature", "model.layers.2", "5", *TINY],
     "the SAE reads model.layers.1, not model.layers.2"),
    ("feature: index past the SAE", ["feature", "model.layers.1", "128", *TINY],
     "feature 128 is out of range: this SAE at model.layers.1 has 128 features (0 to 127)"),
    ("feature: index not a number", ["feature", "model.layers.1", "abc", *TINY], "Invalid value for 'index'"),
    ("feature: top 0", ["feature", "model.layers.1", "3", "--top", "0", *TINY], "Invalid value for '--top'"),
    # ---------------------------------------------------------------- contrast
    ("contrast: unknown condition", ["contrast", "lie", "lei", *TINY],
     "unknown condition(s) lei; conditions are honest, lie, parrot, ignorant"),
    ("contrast: same condition", ["contrast", "lie", "lie", *TINY], "contrast needs two different conditions"),
    ("contrast: condition the scenarios lack", ["contrast", "lie", "ignorant", *TINY],
     "the scenarios have no ignorant scenarios, which the contrast needs (present: honest, lie, parrot)"),
    ("contrast: unknown behaviour", ["contrast", "lie+lied", "lie+truth", *TINY],
     "unknown behaviour 'lied' in 'lie+lied'; behaviours are false (the response states a false answer"),
    ("contrast: behaviour without a name", ["contrast", "lie+false", "lie+", *TINY],
     "unknown behaviour '' in 'lie+'"),
    ("contrast: behaviour of an unknown condition", ["contrast", "lei+false", "lie+truth", *TINY],
     "unknown condition 'lei' in 'lei+false'; conditions are honest, lie, parrot, ignorant; narrowed by behaviour: "
     "honest+false, honest+truth, lie+false, lie+truth, parrot+false, parrot+truth"),
    ("contrast: ignorant narrowed by behaviour", ["contrast", "ignorant+false", "lie+false", *TINY],
     "'ignorant+false': ignorant scenarios are not narrowed by behaviour (the model does not know the answer"),
    ("contrast: a condition against its own narrowing", ["contrast", "lie", "lie+false", *TINY],
     "lie and lie+false overlap: every lie+false scenario is a lie scenario"),
    ("contrast: narrowed condition the scenarios lack", ["contrast", "lie+false", "parrot+truth", "--scenarios",
                                                          "{lies_only}", *M, *S],
     "the scenarios have no parrot scenarios, which the contrast needs (present: lie)"),
    ("contrast: unknown position", ["contrast", "lie", "parrot", "--position", "middle", *TINY],
     "unknown position rule 'middle'"),
    ("contrast: unknown aggregation", ["contrast", "lie", "parrot", "--aggregation", "median", *TINY],
     "unknown aggregation 'median'; choose one of max, mean"),
    ("contrast: unknown split", ["contrast", "lie", "parrot", "--split", "test", *TINY],
     "unknown split 'test'; choose train or heldout"),
    ("contrast: too few resamples", ["contrast", "lie", "parrot", "--n-boot", "10", *TINY],
     "Invalid value for '--n-boot'"),
    ("contrast: unknown control", ["contrast", "lie", "parrot", "--control", "honset", *TINY],
     "unknown condition(s) honset; conditions are honest, lie, parrot, ignorant"),
    ("contrast: control is side A", ["contrast", "lie", "parrot", "--control", "lie", *TINY],
     "the control lie shares scenarios with side A (lie): recall at a false-positive rate needs a control of other "
     "scenarios, e.g. honest or side B"),
    ("contrast: control inside side A", ["contrast", "lie", "parrot", "--control", "lie+truth", *TINY],
     "the control lie+truth shares scenarios with side A (lie)"),
    ("contrast: control the scenarios lack", ["contrast", "lie", "parrot", "--control", "ignorant", *TINY],
     "the scenarios have no ignorant scenarios, which the control needs (present: honest, lie, parrot)"),
    ("contrast: baselines without a train split", ["contrast", "lie", "parrot", "--blackbox", *M, *S,
                                                   "--scenarios", "{heldout_only}"],
     "no train scenarios of condition 'lie' (about known facts): the black-box baseline trains on the train split"),
    # ---------------------------------------------------------------- blackbox
    ("blackbox: unknown condition", ["blackbox", "lie", "honset", *TINY], "honset"),
    ("blackbox: same condition", ["blackbox", "lie", "lie", *TINY], "contrast needs two different conditions"),
    ("blackbox: condition the scenarios lack", ["blackbox", "lie", "ignorant", *TINY],
     "the scenarios have no ignorant scenarios, which the contrast needs (present: honest, lie, parrot)"),
    ("blackbox: a condition against its own narrowing", ["blackbox", "lie", "lie+false", *TINY],
     "lie and lie+false overlap"),
    ("blackbox: feature not a number", ["blackbox", *TINY, "--features", "3,x"],
     "--features: 'x' is not a feature index"),
    ("blackbox: feature past the SAE", ["blackbox", *TINY, "--features", "200"], "200"),
    ("blackbox: question file missing", ["blackbox", *TINY, "--followups", "/nonexistent.yaml"],
     "no follow-up question file at /nonexistent.yaml"),
    ("blackbox: question file not UTF-8", ["blackbox", *TINY, "--followups", "{latin1}"], "is not UTF-8 text"),
    ("blackbox: question file not questions", ["blackbox", *TINY, "--followups", "{h_good}"],
     "follow-up question file"),
    ("blackbox: too few per condition", ["blackbox", *TINY, "--max-per-condition", "2"], "--max-per-condition"),
    ("blackbox: too few resamples", ["blackbox", *TINY, "--n-boot", "10"], "--n-boot"),
    ("blackbox: control is the positive", ["blackbox", *TINY, "--control", "lie"], "shares scenarios with side A"),
    ("blackbox: unknown control", ["blackbox", *TINY, "--control", "honset"], "honset"),
    ("blackbox: output into a file's folder", ["blackbox", *TINY, "--out", "{model}/config.json/x.json"],
     "config.json"),
    ("blackbox: no train split", ["blackbox", *M, *S, "--scenarios", "{heldout_only}"],
     "no train scenarios of condition 'lie' (about known facts): the black-box baseline trains on the train split"),
    # ---------------------------------------------------------------- experiment
    ("experiment: unknown kind", [*X, "--kind", "nope"], "unknown edit kind 'nope'"),
    ("experiment: patch with features", [*X, "--kind", "patch", "--features", "3"], "takes no features"),
    ("experiment: unit the kind does not take", [*X, "--kind", "clamp", "--features", "3", "--scale", "residual"],
     "clamp takes strengths in feature or unit units, not 'residual'"),
    ("experiment: feature not a number", [*X, "--features", "3,x"],
     "'x' is not a feature index: give whole numbers separated by commas"),
    ("experiment: feature past the SAE", [*X, "--features", "200"],
     "feature 200 is out of range: this SAE at model.layers.1 has 128 features (0 to 127)"),
    ("experiment: feature listed twice", [*X, "--features", "3,3"], "feature 3 is listed twice"),
    ("experiment: NaN strength", [*X, "--features", "3", "--strengths", "1,nan"], "strength 'nan' is not finite"),
    ("experiment: strength not a number", [*X, "--features", "3", "--strengths", "1,x"], "'x' is not a number"),
    ("experiment: infinite clamp", [*X, "--kind", "clamp", "--features", "3", "--scale", "unit", "--strengths", "inf"],
     "strength 'inf' is not finite"),
    ("experiment: probe with one condition", [*X, "--probe", "lie"], "--probe takes two conditions"),
    ("experiment: probe of one condition twice", [*X, "--kind", "steer", "--probe", "lie,lie", "--scale", "residual"],
     "the probe needs two different conditions"),
    ("experiment: unknown metric", [*X, "--features", "3", "--metric", "vibes"], "unknown metric 'vibes'"),
    ("experiment: unknown condition", [*X, "--features", "3", "--condition", "lei"], "unknown condition(s) lei"),
    ("experiment: condition the scenarios lack", [*X, "--features", "3", "--condition", "ignorant"],
     "the scenarios have no ignorant scenarios, which the experiment needs"),
    ("experiment: patch from a condition narrowed by behaviour", [*X, "--kind", "patch", "--positions",
                                                                  "last_prompt_token", "--patch-from", "lie+truth"],
     "conditions narrowed by behaviour (lie+truth) are not taken by the edit"),
    ("experiment: an unknown behaviour", [*X, "--features", "3", "--condition", "lie+lied"],
     "unknown behaviour 'lied' in 'lie+lied'"),
    ("experiment: unknown behaviour", [*X, "--features", "3", "--condition", "lie+lied"],
     "unknown behaviour 'lied' in 'lie+lied'"),
    ("experiment: unknown other condition", [*X, "--features", "3", "--other", "honset"],
     "unknown condition(s) honset"),
    ("experiment: unknown control", [*X, "--features", "3", "--controls", "random,vibes"],
     "unknown control(s) vibes; choose among random, sign_flip, other_conditions"),
    ("experiment: layer past the model", [*X, "--kind", "steer", "--probe", "lie,honest", "--scale", "residual",
                                          "--layer", "7"],
     "layer 7 is out of range: this model has 3 layers (0 to 2)"),
    ("experiment: layer with features", [*X, "--features", "3", "--layer", "1"],
     "SAE features are edited at the SAE's site"),
    ("experiment: unknown positions", [*X, "--features", "3", "--positions", "middle"],
     "positions 'middle' do not work for ablate"),
    ("experiment: unknown ablation mode", [*X, "--features", "3", "--mode", "median"],
     "bad experiment settings: mode: Input should be 'zero' or 'mean'"),
    ("experiment: mean over a condition the scenarios lack",
     [*X, "--features", "3", "--mode", "mean", "--mean-over", "ignorant"],
     "the scenarios have no ignorant scenarios, which the experiment needs"),
    ("experiment: no scenarios", [*X, "--features", "3", "--n", "0"], "Invalid value for '--n'"),
    ("experiment: scenario file missing", ["experiment", *M, *S, "--scenarios", "/nonexistent.jsonl",
                                           "--features", "3"], "no scenario file at /nonexistent.jsonl"),
    ("experiment: model folder missing", ["experiment", "--model", "./no/such/model", *S, *D, "--features", "3"],
     "no model folder at ./no/such/model"),
    # ---------------------------------------------------------------- run (hypothesis files)
    ("run: file missing", ["run", "/nonexistent.yaml"], "no hypothesis file at /nonexistent.yaml"),
    ("run: file not UTF-8", ["run", "{latin1}"], "hypothesis file {latin1} is not UTF-8 text"),
    ("run: file a folder", ["run", "{folder}"], "is a folder, not a hypothesis file"),
    ("run: not YAML", ["run", "{h_not_yaml}", "--out", "{out}"], "is not valid YAML: "),
    ("run: NaN threshold", ["run", "{h_nan_threshold}", "--out", "{out}"],
     "tests.0.threshold: Input should be a finite number"),
    ("run: infinite strength", ["run", "{h_inf_strength}", "--out", "{out}"],
     "tests.0.intervention.strengths.0: Input should be a finite number"),
    ("run: feature past the SAE", ["run", "{h_feature_999}", "--out", "{out}"],
     "feature 999 is out of range: this SAE at model.layers.1 has 128 features"),
    ("run: unknown condition", ["run", "{h_condition}", "--out", "{out}"],
     "test 'ablate-lies': unknown condition(s) lei"),
    ("run: contrast on a condition the scenarios lack", ["run", "{h_ignorant}", "--out", "{out}"],
     "the scenarios have no ignorant scenarios, which the hypothesis needs"),
    ("run: contrast with an unknown behaviour", ["run", "{h_bad_behaviour}", "--out", "{out}"],
     "contrast 'lies-vs-resisted': unknown behaviour 'lied' in 'lie+lied'"),
    ("run: contrast at an unknown position", ["run", "{h_position}", "--out", "{out}"],
     "contrast 'lie-vs-parrot': unknown position rule 'middle'"),
    ("run: site not on the model", ["run", "{h_site}", "--out", "{out}"], "model.layers has 3 layers (0-2)"),
    ("run: model folder missing", ["run", "{h_model}", "--out", "{out}"], "no model folder at ./no/such/model"),
    ("run: scenario file missing", ["run", "{h_scenarios}", "--out", "{out}"], "no scenario file at /nonexistent.jsonl"),
    ("run: out is a file", ["run", "{h_good}", "--out", "{latin1}"],
     "is a file, so it cannot be written as the run folder"),
    # ---------------------------------------------------------------- rerun, report
    ("rerun: record missing", ["rerun", "/nonexistent.json"], "no run record at /nonexistent.json"),
    ("rerun: record not UTF-8", ["rerun", "{latin1}"], "run record {latin1} is not UTF-8 text"),
    ("rerun: record not JSON", ["rerun", "{h_not_yaml}"], "is not valid JSON (line 1)"),
    ("rerun: JSON that is no record", ["rerun", "{not_a_record}"], "not_a_record.json"),
    ("report: record missing", ["report", "/nonexistent.json"], "no run record at /nonexistent.json"),
    ("report: unknown format", ["report", "/nonexistent.json", "--format", "pdf"],
     "unknown report format 'pdf': use one of html, md, json"),
    ("report: out under a file", ["report", "{record}", "--out", "{latin1}/report.html"],
     "cannot write the html report at {latin1}/report.html: {latin1} is a file, not a folder"),
    ("report: explanation store is not one", ["report", "{record}", "--out", "{out}/r.html", "--explanations",
                                              "{not_a_record}"], "is not an explanation store"),
    ("report: explanation store not UTF-8 (terminal)", ["report", "{record}", "--format", "terminal",
                                                          "--explanations", "{latin1}"], "is not UTF-8 text"),
    # ---------------------------------------------------------------- incriminate
    ("incriminate: unknown split", ["incriminate", "--split", "test"], "unknown split 'test'; choose train or heldout"),
    ("incriminate: hypothesis missing", ["incriminate", "--hypothesis", "/nonexistent.yaml"],
     "no hypothesis file at /nonexistent.yaml"),
    ("incriminate: hypothesis without features", ["incriminate", "--hypothesis", "{h_direction}"],
     "names no features: the protocol needs the intent hypothesis' features"),
    ("incriminate: feature past the SAE", ["incriminate", "--hypothesis", "{h_feature_999}"],
     "feature 999 is out of range"),
    ("incriminate: out is a folder", ["incriminate", "--out", "{folder}"],
     "is a folder, so it cannot be written as the result file"),
    ("incriminate: hidden topic the scenarios lack", ["incriminate", "--hidden-topic", "weather"],
     "--hidden-topic weather: no scenario of that relation or fact to judge"),
    ("incriminate: hidden-topic recipe without one", ["incriminate", "--hidden-topic", "organisms/smollm2-general-liar/recipe.yaml"],
     "the recipe has no hidden topic"),
    ("incriminate: too few train facts", ["incriminate", "--train-facts", "2"], "Invalid value for '--train-facts'"),
    ("incriminate: own scenario file missing", ["incriminate", "--scenarios", "/nonexistent.jsonl"],
     "no scenario file at /nonexistent.jsonl"),
    ("incriminate: calibration file alone", ["incriminate", "--calibration-scenarios", "{scenarios}"],
     "--calibration-scenarios calibrates for --scenarios FILE: give the file to judge too"),
    ("incriminate: features not numbers", ["incriminate", "--features", "38,abc"],
     "--features: 'abc' is not a feature index: give whole numbers separated by commas"),
    # ---------------------------------------------------------------- scenarios
    ("scenarios build: out is a folder", ["scenarios", "build", "--out", "{folder}"],
     "is a folder, so it cannot be written as the scenario file"),
    ("scenarios build: GGUF file with the default model",
     ["scenarios", "build", "--out", "{out}/s.jsonl", "--gguf-file", "model.gguf"], "given with the default model"),
    ("scenarios build: model folder missing", ["scenarios", "build", "--out", "{out}/s.jsonl", "--model", "./nowhere/x/y"],
     "no model folder at ./nowhere/x/y"),
    ("scenarios check: file missing", ["scenarios", "check", "/nonexistent.jsonl"], "no scenario file at /nonexistent.jsonl"),
    ("scenarios check: not UTF-8", ["scenarios", "check", "{latin1}"], "is not UTF-8 text"),
    ("scenarios check: a folder", ["scenarios", "check", "{folder}"], "is a folder, not a scenario file"),
    ("scenarios import: unknown format", ["scenarios", "import", "csv", "{latin1}", "--out", "{out}/s.jsonl"],
     "unknown format 'csv'; choose statements or truthfulqa"),
    ("scenarios import: file missing", ["scenarios", "import", "truthfulqa", "/nonexistent.csv", "--out", "{out}/s.jsonl"],
     "no truthfulqa file at /nonexistent.csv"),
    ("scenarios import: not UTF-8", ["scenarios", "import", "statements", "{latin1}", "--out", "{out}/s.jsonl"],
     "is not UTF-8 text (byte 3, line 1): save it as UTF-8"),
    ("scenarios import: out is a folder", ["scenarios", "import", "statements", "{latin1}", "--out", "{folder}"],
     "is a folder, so it cannot be written as the scenario file"),
    ("scenarios import: no --out", ["scenarios", "import", "statements", "{latin1}"], "Missing option '--out'"),
    # ---------------------------------------------------------------- organism
    ("organism train: unknown LoRA module", ["organism", "train", "--out", "{out}/a", "--modules", "q_proj,attn_out"],
     "unknown projection(s) attn_out; choose from q_proj"),
    ("organism train: NaN learning rate", ["organism", "train", "--out", "{out}/a", "--lr", "nan"],
     "learning_rate must be a finite number > 0, not nan"),
    ("organism train: learning rate 0", ["organism", "train", "--out", "{out}/a", "--lr", "0"],
     "learning_rate must be a finite number > 0, not 0.0"),
    ("organism train: first layer past the model", ["organism", "train", "--out", "{out}/a", "--first-layer", "5"],
     "first_layer 5 is out of range: model.layers has 3 layers (0-2)"),
    ("organism train: unknown device", ["organism", "train", "--out", "{out}/a", "--device", "tpu"],
     "unknown device 'tpu'; choose auto, cpu, cuda"),
    ("organism train: out is a file", ["organism", "train", "--out", "{latin1}"],
     "is a file, so it cannot be written as the adapter folder"),
    ("organism eval: unknown split", ["organism", "eval", "--split", "test"], "unknown split 'test'"),
    ("organism eval: adapter missing", ["organism", "eval", "--adapter", "/nonexistent"],
     "no organism adapter at /nonexistent"),
    ("organism eval: out is a folder", ["organism", "eval", "--out", "{folder}"],
     "is a folder, so it cannot be written as the evaluation file"),
    ("organism knowledge: recipe missing", ["organism", "knowledge", "--recipe", "/nonexistent.yaml"],
     "no organism recipe at /nonexistent.yaml"),
    ("organism knowledge: recipe not UTF-8", ["organism", "knowledge", "--recipe", "{latin1}"], "is not UTF-8 text"),
    ("organism card: adapter missing", ["organism", "card", "--adapter", "/nonexistent"],
     "/nonexistent/training.json is missing"),
    ("organism card: training record broken", ["organism", "card", "--adapter", "{bad_adapter}"],
     "training.json is not valid JSON (line 1)"),
    # ---------------------------------------------------------------- sae
    ("sae train: k above d_sae", ["sae", "train", "--out", "{out}/s", "--d-sae", "32", "--k", "64"],
     "k (64) must be at most d_sae (32)"),
    ("sae train: NaN learning rate", ["sae", "train", "--out", "{out}/s", "--lr", "nan"],
     "lr must be a finite number > 0, not nan"),
    ("sae train: k not a number", ["sae", "train", "--out", "{out}/s", "--k", "abc"],
     "argument --k: invalid int value: 'abc'"),
    ("sae train: unknown device", ["sae", "train", "--out", "{out}/s", "--device", "gpu0"],
     "unknown device 'gpu0'; choose auto, cpu, cuda"),
    ("sae train: site past the model", ["sae", "train", "--out", "{out}/s", "--site", "model.layers.99"],
     "model.layers has 3 layers (0-2)"),
    ("sae train: model folder missing", ["sae", "train", "--out", "{out}/s", "--model", "./no/such/model"],
     "no model folder at ./no/such/model"),
    ("sae train: adapter missing", ["sae", "train", "--out", "{out}/s", "--adapter", "/nonexistent"],
     "no LoRA adapter at /nonexistent"),
    ("sae train: out is a file", ["sae", "train", "--out", "{latin1}", "--site", "model.layers.1"],
     "is a file, so it cannot be written as the SAE folder"),
    ("sae eval: SAE not in the registry", ["sae", "eval", "--sae", "nope"], "no SAE named 'nope' in the registry"),
    ("sae eval: SAE width does not fit", ["sae", "eval", *M, "--sae-path", "{narrow}"],
     "SAE expects d_in=32 but model.layers.1 outputs 64"),
    ("sae eval: too few texts", ["sae", "eval", "--texts", "2"], "Invalid value for '--texts'"),
    # ---------------------------------------------------------------- explain
    ("explain: unknown context mode", ["explain", "model.layers.1", "3", *TINY, "--modes", "both"],
     "unknown context mode 'both' in --modes: use conversation or window"),
    ("explain: unknown explainer", ["explain", "model.layers.1", "3", *TINY, "--explainer", "gpt"],
     "unknown explainer 'gpt': use local or endpoint"),
    ("explain: endpoint not configured", ["explain", "model.layers.1", "3", *TINY, "--explainer", "endpoint"],
     "the endpoint explainer needs WORKBENCH_EXPLAINER_BASE_URL"),
    ("explain: index past the SAE", ["explain", "model.layers.1", "128", *TINY],
     "feature 128 is out of range: this SAE at model.layers.1 has 128 features (0 to 127)"),
    ("explain: another site than the SAE's", ["explain", "model.layers.2", "5", *TINY], "model.layers.2"),
    ("explain: store is not a store", ["explain", "model.layers.1", "3", *TINY, "--store", "{not_a_record}"],
     "is not an explanation store"),
    ("explain: explainer model missing", ["explain", "model.layers.1", "3", *TINY, "--explainer-model", "./no/such/model"],
     "no model folder at ./no/such/model"),
    ("explain: n-score 1", ["explain", "model.layers.1", "3", *TINY, "--n-score", "1"], "Invalid value for '--n-score'"),
    # ---------------------------------------------------------------- export
    ("export neuronpedia: feature past the SAE", ["export", "neuronpedia", "model.layers.1", "--features", "3,999",
                                                  "--out", "{out}/np", *TINY],
     "feature 999 is out of range: this SAE at model.layers.1 has 128 features"),
    ("export neuronpedia: out is a file", ["export", "neuronpedia", "model.layers.1", "--features", "3",
                                           "--out", "{latin1}", *TINY],
     "is a file, so it cannot be written as the export folder"),
    ("export neuronpedia: no features", ["export", "neuronpedia", "model.layers.1", "--features", "x",
                                         "--out", "{out}/np", *TINY], "x"),
    ("export inspect: record missing", ["export", "inspect", "/nonexistent.json", "--out", "{out}/log.json"],
     "no run record at /nonexistent.json"),
    ("export inspect: not a record", ["export", "inspect", "{not_a_record}", "--out", "{out}/log.json"],
     "not_a_record.json"),
    ("export inspect: out not JSON", ["export", "inspect", "{record}", "--out", "{out}/log.eval"],
     "must end in .json"),
]


def hypothesis_file(folder: Path, name: str, files: dict[str, str], *, text: str | None = None, **changes) -> str:
    """A hypothesis on the tiny model, SAE and scenario file, with ``changes``; its path."""
    data = {
        "name": name, "claim": "Features 3 and 7 carry intent.",
        "model": {"source": files["model"]}, "sae": {"path": files["sae"]}, "features": [3, 7],
        "scenarios": {"source": "file", "file": files["scenarios"], "max_per_condition": 5},
        "contrasts": [{"name": "lie-vs-parrot", "a": "lie", "b": "parrot", "threshold": 0.8}],
        "tests": [{"name": "ablate-lies", "intervention": {"kind": "ablate"}, "condition": "lie", "metric": "p_true",
                   "comparison": ">=", "threshold": 0.1}],
    }
    data.update(changes)
    path = folder / f"{name}.yaml"
    path.write_text(text if text is not None else yaml.safe_dump(data), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_model_dir, tiny_sae_dir, tiny_scenario_file) -> dict[str, str]:
    """Every file and folder a row names, by its placeholder."""
    root = tmp_path_factory.mktemp("bad-input")
    (root / "empty").mkdir()
    (root / "latin1.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    (root / "bad.jsonl").write_text(tiny_scenario_file.read_text(encoding="utf-8").splitlines()[0] + "\nnot json\n",
                                    encoding="utf-8")
    (root / "gguf").mkdir()
    (root / "gguf" / "model.gguf").write_bytes(b"GGUF" + b"\0" * 64)
    (root / "broken-model").mkdir()
    (root / "broken-model" / "config.json").write_text("{not json", encoding="utf-8")
    (root / "bad-cfg").mkdir()
    (root / "bad-cfg" / "cfg.json").write_text("{not json", encoding="utf-8")
    (root / "bad-cfg" / "sae_weights.safetensors").write_bytes(b"")
    build_sae(d_in=32).save_model(root / "narrow")
    build_sae(hook_name="blocks.9.hook_resid_post").save_model(root / "deep")
    (root / "bad-adapter").mkdir()
    (root / "bad-adapter" / "training.json").write_text("{not json", encoding="utf-8")
    (root / "bad-adapter" / "eval-heldout.json").write_text("{}", encoding="utf-8")
    (root / "not_a_record.json").write_text('{"answer": 42}', encoding="utf-8")
    (root / "out").mkdir()
    (root / "lies.jsonl").write_text("".join(line + "\n" for line in tiny_scenario_file.read_text(encoding="utf-8")
                                             .splitlines() if '"condition":"lie"' in line.replace(" ", "")),
                                     encoding="utf-8")
    (root / "heldout.jsonl").write_text("".join(line + "\n" for line in tiny_scenario_file.read_text(encoding="utf-8")
                                                .splitlines() if '"split":"heldout"' in line.replace(" ", "")),
                                        encoding="utf-8")
    found = {
        "heldout_only": str(root / "heldout.jsonl"),
        "model": str(tiny_model_dir), "sae": str(tiny_sae_dir), "scenarios": str(tiny_scenario_file),
        "folder": str(root / "empty"), "latin1": str(root / "latin1.txt"), "bad_line": str(root / "bad.jsonl"),
        "gguf_dir": str(root / "gguf"), "broken_model": str(root / "broken-model"), "bad_cfg": str(root / "bad-cfg"),
        "narrow": str(root / "narrow"), "deep": str(root / "deep"), "bad_adapter": str(root / "bad-adapter"),
        "not_a_record": str(root / "not_a_record.json"), "out": str(root / "out"),
        "lies_only": str(root / "lies.jsonl"),
        "record": str(REPO_ROOT / "hypotheses" / "runs" / "intent-l15.json"),
    }
    hyp = root / "hypotheses"
    hyp.mkdir()
    test = {"name": "ablate-lies", "intervention": {"kind": "ablate"}, "condition": "lie", "metric": "p_true",
            "comparison": ">=", "threshold": 0.1}
    found |= {
        "h_good": hypothesis_file(hyp, "good", found),
        "h_not_yaml": hypothesis_file(hyp, "not-yaml", found, text="name: [unclosed\nclaim: x\n"),
        "h_nan_threshold": hypothesis_file(hyp, "nan-threshold", found, tests=[{**test, "threshold": float("nan")}]),
        "h_inf_strength": hypothesis_file(hyp, "inf-strength", found, tests=[
            {**test, "intervention": {"kind": "steer", "strengths": [float("inf")]}}]),
        "h_feature_999": hypothesis_file(hyp, "feature-999", found, features=[3, 999]),
        "h_condition": hypothesis_file(hyp, "condition", found, tests=[{**test, "condition": "lei"}]),
        "h_ignorant": hypothesis_file(hyp, "ignorant", found, contrasts=[
            {"name": "lie-vs-ignorant", "a": "lie", "b": "ignorant", "threshold": 0.8}]),
        "h_bad_behaviour": hypothesis_file(hyp, "bad-behaviour", found, contrasts=[
            {"name": "lies-vs-resisted", "a": "lie+lied", "b": "lie+truth", "threshold": 0.8}]),
        "h_position": hypothesis_file(hyp, "position", found, contrasts=[
            {"name": "lie-vs-parrot", "a": "lie", "b": "parrot", "position": "middle", "threshold": 0.8}]),
        "h_site": hypothesis_file(hyp, "site", found, site="model.layers.9"),
        "h_model": hypothesis_file(hyp, "model", found, model={"source": "./no/such/model"}),
        "h_scenarios": hypothesis_file(hyp, "scenarios", found, scenarios={"source": "file",
                                                                            "file": "/nonexistent.jsonl"}),
        "h_direction": hypothesis_file(hyp, "direction", found, features=[], contrasts=[],
                                       direction={"positive": "lie", "negative": "honest"},
                                       tests=[{**test, "intervention": {"kind": "steer", "scale": "residual"}}]),
    }
    return found


@pytest.fixture
def compute(monkeypatch, tiny_model_dir) -> list[str]:
    """Spies that refuse (and record) any model load and any forward pass of the (Llama) models; the
    default model's config is the tiny model's (its dequantised cache points at the tiny folder)."""
    from transformers.models.llama import modeling_llama

    ran: list[str] = []

    def refuse(what: str):
        def spy(*args, **kwargs):
            ran.append(what)
            raise AssertionError(f"{what} ran before the bad input was reported")
        return spy

    monkeypatch.setattr("workbench.model.loading.load_hf", refuse("model load"))
    monkeypatch.setattr(modeling_llama.LlamaForCausalLM, "forward", refuse("forward pass"))
    monkeypatch.setattr(modeling_llama.LlamaModel, "forward", refuse("forward pass"))
    monkeypatch.setattr("workbench.model.loading.cached_default_folder", lambda: tiny_model_dir)
    monkeypatch.delenv("WORKBENCH_EXPLAINER_BASE_URL", raising=False)  # the endpoint explainer is not configured
    return ran


@pytest.mark.parametrize(("args", "message"), [row[1:] for row in ROWS], ids=[row[0] for row in ROWS])
def test_bad_input_is_one_line_with_exit_2_before_any_compute(args, message, files, compute, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main([arg.format(**files) for arg in args])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert compute == [], f"{compute} before the error: {err}"
    assert exited.value.code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert message.format(**files) in lines[0]
    assert "Traceback" not in err + out


def test_every_command_has_rows():
    """Every command of the CLI (and every sub-command) has at least one row in the table."""
    import typer.main

    group = typer.main.get_command(cli.app)
    commands = set()
    for name, command in group.commands.items():
        for sub in getattr(command, "commands", {None: None}):
            commands.add(f"{name} {sub}" if sub else name)
    covered = {" ".join(args[:2]) if args[0] in ("scenarios", "organism", "sae", "export") else args[0] for _, args, _ in ROWS}
    assert commands - covered == set()


def test_user_text_cannot_inject_markup(files, compute, capsys):
    """A path with Rich markup in it is printed as it is (no style, no markup error)."""
    with pytest.raises(SystemExit):
        cli.main(["scenarios", "check", "/tmp/[bold]x[/bold].jsonl"])
    assert capsys.readouterr().err.strip() == "error: no scenario file at /tmp/[bold]x[/bold].jsonl"
