"""The report document: built once from a typed run record, rendered by every renderer.

``build_report(record)`` turns a ``RunRecord`` into a ``ReportDocument``: numbered sections
holding typed blocks (headings, paragraphs, key-value tables, tables, figures, whole
conversations, the verdict banner, code, limitations, and groups such as one prediction).
Every number is formatted here, with its n and interval, so the renderers (``html.to_html``,
``markdown.to_markdown``, ``terminal.to_terminal`` and the app's ``ui.records.show_document``)
only lay blocks out. A report section is added here, in one place; a new block type is added to
``BLOCK_TYPES`` and to each renderer's table of block renderers (a test checks they match).

Blocks hold plain text: each renderer escapes it for its medium.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from workbench.causal.edits import EDIT_KINDS
from workbench.core.conditions import expected_call
from workbench.core.stats import Estimate, wilson_interval
from workbench.features.blackbox import BlackBoxComparison
from workbench.features.explanations import Explanation, ExplanationStore
from workbench.hypotheses.records import (
    ExampleRecord,
    FeatureStat,
    PredictionResult,
    RunRecord,
)
from workbench.report import figures as charts

__all__ = [
    "BLOCK_TYPES", "Block", "Chip", "Code", "Conversation", "Figure", "Group", "Heading", "KeyValues", "Limitations",
    "Paragraph", "ReportDocument", "SECTIONS", "SIDE_EFFECT_KL", "SMALL_N", "Section", "Table", "VerdictBanner",
    "WIDE_INTERVAL", "build_report", "estimate_text", "explanations_for", "limitations", "number", "separation",
]

#: Below this many samples an estimate is called small in the limitations.
SMALL_N = 30
#: An interval wider than this on a rate, probability or AUROC is called wide.
WIDE_INTERVAL = 0.3
#: Mean next-token KL (nats) on neutral text above which an edit is said to have side effects.
SIDE_EFFECT_KL = 0.1

#: Colours of the behaviour check's readings (``hypotheses.records.BehaviourCheck.reading``).
READING_COLOURS = {"behaviour": "#047857", "instruction": "#b91c1c", "unclear": "#b45309", "too few": "#4b5563"}
VERDICT_COLOURS = {"supported": "#047857", "refuted": "#b91c1c", "inconclusive": "#b45309"}
OUTCOME_COLOURS = charts.OUTCOME_COLOURS

#: Sections in order: (anchor, title). ``responses`` appears only when the record has per-response calls.
SECTIONS = [
    ("claim", "Claim and verdict"),
    ("setup", "Setup"),
    ("evidence", "Evidence"),
    ("predictions", "Predictions and causal tests"),
    ("responses", "Per-response calls"),
    ("limitations", "Limitations"),
]


# ----------------------------------------------------------------------------- blocks


@dataclass(frozen=True)
class Chip:
    """A coloured word: a verdict, an outcome, a call."""

    word: str
    colour: str


Cell = str | Chip


@dataclass(frozen=True)
class Heading:
    """A heading inside a section (level 3, or 4 below it)."""

    text: str
    level: Literal[3, 4] = 3


@dataclass(frozen=True)
class Paragraph:
    """Plain text; ``quote`` for the claim, ``muted`` for explanations and notes."""

    text: str
    tone: Literal["plain", "muted", "quote"] = "plain"


@dataclass(frozen=True)
class VerdictBanner:
    """The hypothesis' verdict with its reason (anchor ``verdict``)."""

    label: str
    chip: Chip
    reason: str


@dataclass(frozen=True)
class KeyValues:
    """Two columns: what, and its value."""

    rows: tuple[tuple[str, Cell], ...]


@dataclass(frozen=True)
class Table:
    """A table; ``numeric`` marks the columns that hold numbers (aligned as such)."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    numeric: tuple[bool, ...] = ()

    def is_numeric(self, column: int) -> bool:
        return column < len(self.numeric) and self.numeric[column]


@dataclass(frozen=True)
class Figure:
    """A plotly chart, drawn on first use. ``name`` is stable and file-safe (PNG export);
    ``fallback`` holds the blocks shown where the chart cannot be (Markdown without PNGs, the terminal)."""

    name: str
    title: str
    draw: Callable[[], Any] = field(compare=False, repr=False)
    fallback: tuple[Any, ...] = ()
    _drawn: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def figure(self) -> Any:
        if "figure" not in self._drawn:
            self._drawn["figure"] = self.draw()
        return self._drawn["figure"]


@dataclass(frozen=True)
class Conversation:
    """A whole conversation with a feature's value at every token, speaker turns marked."""

    example: ExampleRecord


@dataclass(frozen=True)
class Code:
    """Literal text (the command that reruns the run)."""

    text: str


@dataclass(frozen=True)
class Limitations:
    """What weakens the verdict; ``none_found`` says what was checked when the list is empty."""

    items: tuple[str, ...]
    none_found: str


@dataclass(frozen=True)
class Group:
    """Blocks that belong together under a title (one prediction), with an anchor."""

    anchor: str
    title: str
    tag: str
    chip: Chip | None
    blocks: tuple[Any, ...]


Block = Heading | Paragraph | VerdictBanner | KeyValues | Table | Figure | Conversation | Code | Limitations | Group
#: Every block type; each renderer has one function per type (a test holds them to this list).
BLOCK_TYPES: tuple[type, ...] = (Heading, Paragraph, VerdictBanner, KeyValues, Table, Figure, Conversation, Code,
                                 Limitations, Group)


@dataclass(frozen=True)
class Section:
    anchor: str
    title: str
    """Numbered title (``1. Claim and verdict``)."""
    blocks: tuple[Block, ...]


@dataclass(frozen=True)
class ReportDocument:
    title: str
    subtitle: str
    sections: tuple[Section, ...]
    footer: str

    def section(self, anchor: str) -> Section | None:
        return next((s for s in self.sections if s.anchor == anchor), None)

    def blocks(self) -> Iterator[Block]:
        """Every block, groups' contents and figures' fallbacks included, in document order."""
        def walk(blocks):
            for block in blocks:
                yield block
                if isinstance(block, Group):
                    yield from walk(block.blocks)
                elif isinstance(block, Figure):
                    yield from walk(block.fallback)
        for section in self.sections:
            yield from walk(section.blocks)

    def figures(self) -> list[Figure]:
        return [b for b in self.blocks() if isinstance(b, Figure)]


# ----------------------------------------------------------------------------- numbers


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def number(x: Any) -> str:
    """A number as the report writes it (3 decimals; 3 significant digits when very large or small)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    if isinstance(x, int):
        return str(x)
    if not math.isfinite(x):
        return "n/a"
    if x != 0 and (abs(x) >= 1e4 or abs(x) < 1e-3):
        return f"{x:.3g}"
    return f"{x:.3f}"


def interval_text(e: Estimate) -> str:
    """``[low, high]``, or why there is none."""
    if _finite(e.low) and _finite(e.high):
        return f"[{number(e.low)}, {number(e.high)}]" if e.has_interval else e.interval()
    return "(no interval recorded)" if _finite(e.value) else "n/a"


def estimate_text(e: Estimate) -> str:
    """``value [low, high] n=N``: every number with its interval and n."""
    if e.n == 0 or not _finite(e.value):
        return f"n/a (n={e.n})"
    return f"{number(e.value)} {interval_text(e)} n={e.n}"


def _bounded_metric(metric: str, measured: Estimate) -> bool:
    """Rates, probabilities and AUROCs: where an interval width of 0.3 means something."""
    words = ("auroc", "auc", "rate", "fraction", "accuracy", "prob", "p_true", "p_false")
    return measured.method == "wilson" or any(word in metric.lower() for word in words)


def prediction_rule(p: PredictionResult) -> str:
    if p.comparison == "abs<":
        return f"|{p.metric}| < {number(p.threshold)}"
    return f"{p.metric} {p.comparison} {number(p.threshold)}"


def outcome_text(p: PredictionResult) -> str:
    interval = interval_text(p.measured)
    if p.outcome == "holds":
        return f"the whole interval {interval} is on the predicted side of {number(p.threshold)}."
    if p.outcome == "contradicted":
        return f"the whole interval {interval} is on the other side of {number(p.threshold)}."
    return f"the interval {interval} overlaps the threshold {number(p.threshold)}."


def separation(p: PredictionResult, diff: Estimate) -> tuple[str, str]:
    """Whether the target effect is set apart from a control's: ``(state, words)`` with state
    ``separated``, ``overlaps``, ``wrong way`` (the control moves the metric more in the
    predicted direction) or ``unknown``."""
    if not (_finite(diff.low) and _finite(diff.high)) or diff.n == 0:
        return "unknown", "not measured"
    if diff.low <= 0 <= diff.high:
        return "overlaps", "no: interval includes 0"
    above = diff.low > 0
    if p.comparison == ">=" and not above:
        return "wrong way", "no: the control's effect is larger"
    if p.comparison == "<=" and above:
        return "wrong way", "no: the control's effect is larger"
    return "separated", f"yes: target {'above' if above else 'below'} control"


# ----------------------------------------------------------------------------- limitations


def limitations(record: RunRecord) -> list[str]:
    """Plain statements of what weakens the verdict, derived from the record's numbers."""
    found: list[str] = []
    small = {c: n for c, n in record.scenario_counts.items() if n < SMALL_N}
    if small:
        listed = ", ".join(f"{c} {n}" for c, n in small.items())
        found.append(f"Few scenarios per condition (fewer than {SMALL_N}): {listed}. "
                     "Per-condition statistics from so few items can move a lot on a rerun.")
    small_tests = [f"{p.name} n={p.measured.n}" for p in record.predictions
                   if 0 < p.measured.n < SMALL_N and _finite(p.measured.value)]
    if small_tests:
        found.append(f"Small samples (fewer than {SMALL_N}) behind: {', '.join(small_tests)}.")
    for prediction in record.predictions:
        name, measured = prediction.name, prediction.measured
        if measured.n == 0 or not _finite(measured.value):
            found.append(f"{name}: nothing was measured (n={measured.n}).")
            continue
        width = measured.high - measured.low
        if _bounded_metric(prediction.metric, measured) and width > WIDE_INTERVAL:
            found.append(f"{name}: the 95% interval of {prediction.metric} is wide "
                         f"({interval_text(measured)}, width {number(width)}).")
        if prediction.outcome == "unclear":
            found.append(f"{name}: unclear: the interval {interval_text(measured)} overlaps the threshold "
                         f"({prediction_rule(prediction)}), so it neither holds nor is contradicted.")
        causal = prediction.causal
        kl = causal.result.neutral_kl if causal is not None else None
        if kl is not None and _finite(kl.value) and kl.value > SIDE_EFFECT_KL:
            found.append(f"{name}: the edit also changes the model on neutral text (mean next-token KL "
                         f"{estimate_text(kl)} nats, above {SIDE_EFFECT_KL:g}): part of its effect may be damage "
                         "rather than the mechanism.")
        if prediction.kind == "causal" and not prediction.controls:
            found.append(f"{name}: a causal test without controls; its effect is not compared with any control edit.")
        for control in prediction.controls:
            diff = control.target_minus_control
            state, _ = separation(prediction, diff)
            if state == "overlaps":
                found.append(f"{name}: the target effect is not separated from the control "
                             f"\u201c{control.name}\u201d (target minus control {estimate_text(diff)} includes 0).")
            elif state == "wrong way":
                found.append(f"{name}: the control \u201c{control.name}\u201d moves {prediction.metric} more than "
                             f"the target edit in the predicted direction (target minus control {estimate_text(diff)}).")
    for probe in record.probe:
        auroc = probe.auroc
        if _finite(auroc.low) and _finite(auroc.high) and auroc.high - auroc.low > WIDE_INTERVAL:
            found.append(f"Probe baseline ({probe.kind}, {probe.positive} vs {probe.negative}): wide AUROC interval "
                         f"{interval_text(auroc)}.")
    judged = [r for r in record.responses if expected_call(r.condition) is not None]
    disagree = [r for r in judged if r.call != expected_call(r.condition)]
    if disagree:
        found.append(f"Per-response calls disagree with the scenario's condition on {len(disagree)} of "
                     f"{len(judged)} responses ({', '.join(r.scenario_id for r in disagree[:5])}"
                     f"{', ...' if len(disagree) > 5 else ''}).")
    check = record.behaviour_check
    if check is not None and check.reading in ("instruction", "unclear", "too few"):
        found.append(f"Act or instruction ({check.reading}): {check.summary}")
    if record.environment.git_dirty is True:
        found.append("The working tree had uncommitted changes when this ran: the recorded commit alone does "
                     "not reproduce it.")
    if not record.examples:
        found.append("The record holds no whole-context examples of the features.")
    return found


# ----------------------------------------------------------------------------- sections


def build_report(record: RunRecord, explanations: Sequence[Explanation] = ()) -> ReportDocument:
    """The report of a run record, built once; render it with ``to_html``, ``to_markdown``,
    ``to_terminal`` or the app's ``show_document``. ``explanations`` of the record's features
    (``explanations_for``) are shown in the evidence section with their scores and who wrote them."""
    builders: dict[str, Callable[[RunRecord], tuple[Block, ...] | None]] = {
        "claim": _claim, "setup": _setup, "evidence": functools.partial(_evidence, explanations=explanations),
        "predictions": _predictions,
        "responses": _responses, "limitations": _limitations,
    }
    sections = []
    for anchor, title in SECTIONS:
        blocks = builders[anchor](record)
        if blocks is not None:  # a section with nothing to say is left out
            sections.append(Section(anchor=anchor, title=f"{len(sections) + 1}. {title}", blocks=blocks))
    title = str(record.hypothesis.get("name")
                or (Path(record.hypothesis_path).stem if record.hypothesis_path else "hypothesis"))
    subtitle = (f"Run finished {record.created} · record version {record.version}"
                + (f" · {record.hypothesis_path}" if record.hypothesis_path else ""))
    footer = (f"Generated by the intent workbench from the run record (version {record.version}). Rerun with the "
              "command in the setup section; the JSON report holds every number.")
    return ReportDocument(title=f"Hypothesis report: {title}", subtitle=subtitle, sections=tuple(sections),
                          footer=footer)


def _outcome_chip(outcome: str) -> Chip:
    return Chip(outcome, OUTCOME_COLOURS.get(outcome, "#4b5563"))


def _claim(record: RunRecord) -> tuple[Block, ...]:
    claim = record.hypothesis.get("claim") or "(the hypothesis states no claim)"
    blocks: list[Block] = [
        Paragraph(str(claim), tone="quote"),
        VerdictBanner("Verdict", Chip(record.verdict, VERDICT_COLOURS.get(record.verdict, "#4b5563")),
                      record.verdict_reason),
    ]
    if record.predictions:
        blocks.append(Table(
            columns=("prediction", "kind", "predicted", "measured", "95% CI", "n", "outcome"),
            rows=tuple((p.name, p.kind, prediction_rule(p), number(p.measured.value), interval_text(p.measured),
                        str(p.measured.n), _outcome_chip(p.outcome)) for p in record.predictions),
            numeric=(False, False, False, True, True, True, False)))
    else:
        blocks.append(Paragraph("The hypothesis makes no predictions.", tone="muted"))
    check = record.behaviour_check
    if check is not None:
        blocks.append(KeyValues(rows=(("Act or instruction?", Chip(check.reading, READING_COLOURS[check.reading])),
                                      ("What the behaviour check found", check.summary))))
    return tuple(blocks)


def _behaviour_blocks(record: RunRecord) -> list[Block]:
    """Act or instruction: the features where the model followed the instruction vs where it resisted,
    beside the prompt contrasts."""
    check = record.behaviour_check
    base = check.condition if check is not None else "lie"
    blocks: list[Block] = [Heading(f"Act or instruction? {base}+false vs {base}+truth")]
    if check is None:
        blocks.append(Paragraph("This record has no behaviour check (it was recorded before the check existed, or "
                                "its held-out set has no lie scenarios). A feature that separates lie prompts from "
                                "others may read the instruction to lie rather than the act: rerun to compare lie "
                                "prompts the model lied on with those it resisted.", tone="muted"))
        return blocks
    blocks.append(Paragraph(f"The same kind of prompt ({base}), split by what the model did, judged from its "
                            f"response: {base}+false (it followed the instruction and said something false) vs "
                            f"{base}+truth (it resisted and told the truth). Features that carry the act separate "
                            "these; features that read the instruction do not.", tone="muted"))
    blocks.append(Paragraph(check.summary))
    blocks.append(Table(
        columns=("side", "responses", "mean summed activation", "fires on"),
        rows=((f"{base}+false (followed)", str(check.n_false), number(check.mean_false), ""),
              (f"{base}+truth (resisted)", str(check.n_truth), number(check.mean_truth),
               f"{check.active_truth:.0%}" if _finite(check.active_truth) else ""),
              ("neither answer (on no side)", str(check.no_answer), "", "")),
        numeric=(False, True, True, True)))
    rows = [(name, number(value)) for name, value in check.prompt_aurocs]
    rows.append((f"{base}+false vs {base}+truth at {check.position}", estimate_text(check.auroc)))
    blocks.append(Table(columns=("contrast", "AUROC"), rows=tuple(rows), numeric=(False, True)))
    return blocks


def _setup(record: RunRecord) -> tuple[Block, ...]:
    setup, env = record.setup, record.environment
    model = setup.model
    source = model.source + (f" (GGUF {model.gguf_file})" if model.gguf_file else "") + \
        (f" @ {model.revision}" if model.revision else "")
    rows: list[tuple[str, Cell]] = [
        ("Model", f"{setup.model_name} ({source}, {model.dtype}{', remote' if model.remote else ''})"),
        ("Adapter", setup.adapter or "none"),
        ("Model identity", setup.model_identity),
        ("SAE", setup.sae.describe()),
        ("SAE identity", setup.sae_identity),
        ("Site", setup.site),
        ("SAE features (d_sae)", str(setup.d_sae)),
    ]
    features = record.hypothesis.get("features")
    direction = record.hypothesis.get("direction")
    if features:
        rows.append(("Feature(s)", ", ".join(str(f) for f in features)))
    if isinstance(direction, dict):
        rows.append(("Direction", f"{direction.get('probe')} probe, {direction.get('positive')} - "
                                  f"{direction.get('negative')}"))
    scenarios = setup.scenarios
    rows += [
        ("Scenarios", (f"file {scenarios.file}" if scenarios.source == "file" else "organism protocol set")
         + (f" · {scenarios.train_facts} train facts" if scenarios.train_facts is not None else "")
         + f" · up to {scenarios.max_per_condition} per condition in each causal test"),
        ("Scenario set hashes", f"train {setup.train_hash}, held-out {setup.heldout_hash}"),
        ("Held-out scenarios per condition", ", ".join(f"{c} {n}" for c, n in record.scenario_counts.items())),
        ("Seed", str(setup.seed)),
        ("Git commit", (env.git_commit or "not recorded") + (" (uncommitted changes)" if env.git_dirty else "")),
        ("Python", env.python),
        ("Platform", env.platform),
        ("Torch threads", str(env.torch_threads)),
        ("Finished", record.created),
    ]
    if record.seconds:
        rows.append(("Run time", f"{record.seconds:.1f} s"))
    if record.hypothesis_path:
        rows.append(("Hypothesis file", record.hypothesis_path))
    blocks: list[Block] = [KeyValues(tuple(rows))]
    blocks += [Paragraph(note, tone="muted") for note in setup.identity_notes()]
    blocks += [Heading("Command to rerun", 4), Code(record.command)]
    if env.packages:
        blocks += [Heading("Package versions", 4),
                   Table(columns=("package", "version"),
                         rows=tuple((k, v or "not installed") for k, v in env.packages.items()))]
    return tuple(blocks)


def _quantiles(values: list[float]) -> list[float]:
    """min, 25%, median, 75%, max (linear interpolation)."""
    ordered = sorted(values)

    def at(q: float) -> float:
        position = q * (len(ordered) - 1)
        low = math.floor(position)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (position - low)

    return [at(q) for q in (0.0, 0.25, 0.5, 0.75, 1.0)]


def _distribution_table(stats: list[FeatureStat]) -> tuple[Block, ...]:
    """The distribution in numbers, for where the chart cannot be shown."""
    with_values = [s for s in stats if s.values]
    if with_values:
        return (Paragraph("Distribution over scenarios:", tone="muted"),
                Table(columns=("condition", "n", "min", "25%", "median", "75%", "max"),
                      rows=tuple((s.condition, str(len(s.values)), *[number(q) for q in _quantiles(s.values)])
                                 for s in with_values),
                      numeric=(False, True, True, True, True, True, True)))
    with_hist = [s for s in stats if s.histogram]
    if with_hist and all(s.histogram.edges == with_hist[0].histogram.edges for s in with_hist):
        edges = with_hist[0].histogram.edges
        return (Paragraph("Scenarios per activation bin:", tone="muted"),
                Table(columns=("bin", *[s.condition for s in with_hist]),
                      rows=tuple((f"{number(edges[i])}–{number(edges[i + 1])}",
                                  *[str(s.histogram.counts[i]) for s in with_hist]) for i in range(len(edges) - 1)),
                      numeric=(False, *[True] * len(with_hist))))
    return ()


def explanations_for(record: RunRecord, store: ExplanationStore) -> list[Explanation]:
    """The store's explanations of the record's features, for its model and SAE."""
    features = record.hypothesis.get("features") or []
    return [e for f in features for e in store.find(site=record.setup.site, feature=int(f),
                                                    model_identity=record.setup.model_identity,
                                                    sae_identity=record.setup.sae_identity)]


def _explanation_blocks(explanations: Sequence[Explanation]) -> list[Block]:
    blocks: list[Block] = [Heading("Explanations")]
    if not explanations:
        blocks.append(Paragraph("No stored explanation of these features for this model and SAE (write one with "
                                "`python -m workbench explain SITE FEATURE`).", tone="muted"))
        return blocks
    blocks.append(Paragraph("One sentence per feature and context, written by the explainer from whole conversations "
                            "or from short windows around the maximum, and scored on held-out items: detection (does "
                            "a scorer given the sentence tell activating from non-activating items) and fuzzing (does "
                            "it tell the truly marked tokens from decoys); balanced accuracy, 0.5 = chance.",
                            tone="muted"))
    blocks.append(Table(
        columns=("feature", "context", "explanation", "detection [95% CI] n", "fuzzing [95% CI] n", "explainer"),
        rows=tuple((str(e.feature), e.settings.mode, e.text, estimate_text(e.detection.balanced_accuracy),
                    estimate_text(e.fuzzing.balanced_accuracy), f"{e.explainer.kind}: {e.explainer.model}")
                   for e in explanations),
        numeric=(True, False, False, True, True, False)))
    return blocks


def _evidence(record: RunRecord, explanations: Sequence[Explanation] = ()) -> tuple[Block, ...]:
    blocks: list[Block] = [Heading("Examples in full context")]
    if record.examples:
        blocks.append(Paragraph("Each example is the whole conversation, turn by turn. Tokens are shaded by the "
                                "feature's activation (the maximum is marked with its value); │answer→ marks where "
                                "the response starts.", tone="muted"))
        blocks += [Conversation(example) for example in record.examples]
    else:
        blocks.append(Paragraph("The record holds no examples.", tone="muted"))

    blocks.append(Heading("Activation per condition"))
    groups: dict[tuple[int, str, str], list[FeatureStat]] = {}
    for stat in record.feature_stats:
        groups.setdefault((stat.feature, stat.site, stat.position), []).append(stat)
    for index, ((feature, site, position), stats) in enumerate(groups.items(), start=1):
        title = f"feature {feature} at {site}"
        blocks.append(Heading(f"{title} (max over {position.replace('_', ' ')})", 4))
        blocks.append(Figure(f"feature-{index}", f"{title} per condition",
                             functools.partial(charts.feature_conditions_figure, title, stats)))
        if any(s.values or s.histogram for s in stats):
            blocks.append(Figure(f"feature-{index}-distribution", f"{title} distribution",
                                 functools.partial(charts.feature_distribution_figure, title, stats),
                                 fallback=_distribution_table(stats)))
        blocks.append(Table(
            columns=("condition", "n", "mean activation [95% CI]", "active fraction [95% CI]"),
            rows=tuple((s.condition, str(s.n), estimate_text(s.mean), estimate_text(s.active_fraction)) for s in stats),
            numeric=(False, True, True, True)))
    if not groups:
        blocks.append(Paragraph("The record holds no per-condition feature statistics.", tone="muted"))

    blocks.append(Heading("Contrast statistics"))
    contrasts = [p for p in record.predictions if p.kind in ("contrast", "probe")]
    if contrasts:
        blocks.append(Table(
            columns=("prediction", "what", "metric", "value [95% CI] n", "interval"),
            rows=tuple((p.name, p.description, p.metric, estimate_text(p.measured), p.measured.method)
                       for p in contrasts),
            numeric=(False, False, False, True, False)))
    else:
        blocks.append(Paragraph("No contrast predictions in this hypothesis.", tone="muted"))

    blocks += _behaviour_blocks(record)

    blocks.append(Heading("Probe baseline"))
    if record.probe:
        blocks.append(Paragraph("A supervised linear probe on the same site, trained on train scenarios and scored on "
                                "held-out ones: how well the site separates the conditions at all, for comparison "
                                "with the features.", tone="muted"))
        blocks.append(Table(
            columns=("probe", "site", "positive", "negative", "train n (positive/negative)",
                     "held-out AUROC [95% CI] n", "held-out n (positive/negative)", "interval"),
            rows=tuple((p.kind, p.site, p.positive, p.negative, f"{p.n_train_positive}/{p.n_train_negative}",
                        estimate_text(p.auroc), f"{p.n_heldout_positive}/{p.n_heldout_negative}", p.auroc.method)
                       for p in record.probe),
            numeric=(False, False, False, False, True, True, True, False)))
        detected = [p for p in record.probe if p.detection is not None]
        if detected:
            blocks.append(Paragraph("As detection papers report it: balanced accuracy at the threshold set on the "
                                    "train split, and recall at 1% false-positive rate on a control set (the "
                                    "threshold that 1% of the control exceeds).", tone="muted"))
            blocks.append(Table(
                columns=("probe", "positive vs negative", "balanced accuracy [95% CI] n", "recall at 1% FPR [95% CI]"),
                rows=tuple((p.kind, f"{p.positive} vs {p.negative}", estimate_text(p.detection.balanced_accuracy),
                            p.detection.recall_text()) for p in detected),
                numeric=(False, False, True, True)))
    else:
        blocks.append(Paragraph("No probe baseline in this record.", tone="muted"))
    blocks += blackbox_blocks(record.blackbox)
    blocks += _explanation_blocks(explanations)
    return tuple(blocks)


def blackbox_blocks(comparison: BlackBoxComparison | None) -> list[Block]:
    """The black-box baseline (``features.blackbox.BlackBoxComparison``) beside the white-box detectors:
    each detector's held-out AUROC and recall at 1% FPR with n, and its white-box gain (paired bootstrap);
    then whether the black box separates the positive condition from each negative equally well."""
    blocks: list[Block] = [Heading("Black-box baseline")]
    if comparison is None:
        blocks.append(Paragraph("No black-box baseline in this record (records before version 4 did not measure "
                                "it).", tone="muted"))
        return blocks
    blocks.append(Paragraph(
        f"After each answer the model is asked {comparison.followups}, unrelated to the conversation (about lying, "
        "factual, ambiguous); a logistic regression on the log-odds of its answering yes vs no, trained on train "
        "responses, scores held-out ones. It reads only the model's outputs. The white-box gain is a detector's "
        "AUROC minus the black box's on the same held-out responses (paired bootstrap 95% CI).", tone="muted"))
    rows = []
    for result in comparison.results:
        contrast = f"{result.positive} vs {result.negative}"
        rows.append((contrast, "black box: follow-up questions", estimate_text(result.detection.auroc),
                     result.detection.recall_text(), ""))
        rows += [(contrast, gain.detector, estimate_text(gain.detection.auroc), gain.detection.recall_text(),
                  estimate_text(gain.gain)) for gain in result.gains]
    blocks.append(Table(columns=("contrast", "detector", "held-out AUROC [95% CI] n", "recall at 1% FPR [95% CI]",
                                 "white-box gain [95% CI] n"),
                        rows=tuple(rows), numeric=(False, False, True, True, True)))
    blocks += [Paragraph(gap.summary()[0].upper() + gap.summary()[1:] + ".") for gap in comparison.gaps]
    return blocks


def _predictions(record: RunRecord) -> tuple[Block, ...]:
    if not record.predictions:
        return (Paragraph("The hypothesis makes no predictions.", tone="muted"),)
    return tuple(_prediction(p, index) for index, p in enumerate(record.predictions, start=1))


def _prediction(p: PredictionResult, index: int) -> Group:
    blocks: list[Block] = []
    if p.description:
        blocks.append(Paragraph(p.description))
    method = f" ({p.measured.method} 95% interval)" if p.measured.method else ""
    blocks.append(KeyValues((
        ("Prediction", prediction_rule(p)),
        ("Measured", estimate_text(p.measured) + method),
        ("Outcome", f"{p.outcome}: {outcome_text(p)}"),
    )))
    blocks += [Paragraph(note, tone="muted") for note in p.notes]
    if p.causal is not None:
        blocks += _causal_blocks(p, index)
    elif p.contrast is not None:
        blocks += _contrast_blocks(p)
    return Group(anchor=f"prediction-{index}", title=f"{index}. {p.name}", tag=p.kind,
                 chip=_outcome_chip(p.outcome), blocks=tuple(blocks))


def _contrast_blocks(p: PredictionResult) -> list[Block]:
    c = p.contrast
    assert c is not None
    rows = []
    for condition, n, mean, active in ((c.a, c.n_a, c.mean_a, c.active_a), (c.b, c.n_b, c.mean_b, c.active_b)):
        rows.append((condition, str(n), f"{number(mean)} (no interval recorded)",
                     estimate_text(wilson_interval(active, n)) + f" ({active} of {n})"))
    return [Heading(f"Summed feature activation at {c.position.replace('_', ' ')}", 4),
            Table(columns=("condition", "n", "mean", "fraction where a feature fires [95% CI]"), rows=tuple(rows),
                  numeric=(False, True, True, True))]


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return out


def _causal_blocks(p: PredictionResult, index: int) -> list[Block]:
    causal = p.causal
    assert causal is not None
    result, experiment = causal.result, causal.result.experiment
    blocks: list[Block] = [Figure(f"prediction-{index}-effects", f"{p.name}: effect vs controls",
                                  functools.partial(charts.effects_figure, p))]
    controls = p.controls
    if controls:
        blocks.append(Heading("Controls at the judged strength", 4))
        blocks.append(Table(
            columns=("control", "condition", "strength", "control effect [95% CI] n",
                     "target minus control [95% CI] n", "separated from target?"),
            rows=tuple((c.name, c.condition, number(c.strength), estimate_text(c.effect),
                        estimate_text(c.target_minus_control), separation(p, c.target_minus_control)[1])
                       for c in controls),
            numeric=(False, False, True, True, True, False)))
    else:
        blocks.append(Paragraph("No controls were measured for this prediction.", tone="muted"))

    blocks.append(Heading("Effect over strengths", 4))
    blocks.append(Figure(f"prediction-{index}-curves", f"{p.name}: effect over strengths",
                         functools.partial(charts.curves_figure, p)))
    curves = result.curves
    strengths = sorted({s for curve in curves for s in curve.strengths})
    names = _unique([curve.label if curve.role == "target" else f"{curve.label} [{curve.role.replace('_', ' ')}]"
                     for curve in curves])
    rows: list[tuple[Cell, ...]] = [("unedited metric", *[estimate_text(curve.unedited) for curve in curves])]
    for strength in strengths:
        row: list[Cell] = [number(strength) + (" (judged)" if strength == causal.judged_strength else "")]
        for curve in curves:
            row.append(estimate_text(curve.effects[curve.strengths.index(strength)])
                       if strength in curve.strengths else "")
        rows.append(tuple(row))
    blocks.append(Paragraph(f"Effect = {experiment.metric} edited minus unedited, per scenario, averaged over the "
                            f"scenarios (95% interval). Strength unit: {result.unit}.", tone="muted"))
    blocks.append(Table(columns=("strength", *names), rows=tuple(rows), numeric=(False, *[True] * len(curves))))

    edit = experiment.edit
    kind = EDIT_KINDS.get(edit.kind)
    settings = kind.describe_settings(edit) if kind is not None else ""
    if experiment.features:
        target = "features " + ", ".join(str(f) for f in experiment.features)
    elif experiment.direction is not None:
        d = experiment.direction
        target = f"{d.probe} probe direction {d.positive} - {d.negative}"
    else:
        target = "the activation"
    rows_kv: list[tuple[str, Cell]] = [
        ("Edit", f"{edit.kind} {target} at positions {edit.positions}" + (f"; {settings}" if settings else "")),
        ("Site", result.site + (f" (residual after layer {experiment.layer})" if experiment.layer is not None else "")),
        ("Scenarios", f"{experiment.n_scenarios} {experiment.condition} scenarios (seeded sample, seed "
                      f"{experiment.seed})" + (f"; ids: {', '.join(result.scenario_ids)}" if result.scenario_ids
                                               else "; ids not recorded")),
        ("Strengths", ", ".join(number(s) for s in experiment.strengths) + f" (judged at {number(causal.judged_strength)})"),
        ("Metric", experiment.metric),
        ("Controls requested", ", ".join(experiment.controls) or "none"),
        ("Neutral-text KL at the strongest strength",
         f"{estimate_text(result.neutral_kl)} (nats)" if result.neutral_kl is not None else "not measured"),
    ]
    if result.random_feature_sets:
        rows_kv.append(("Random feature sets", "; ".join(", ".join(str(f) for f in s) for s in result.random_feature_sets)))
    blocks += [Heading("Experiment", 4), KeyValues(tuple(rows_kv))]
    if result.generations:
        blocks.append(Heading("Greedy answers before and after the edit", 4))
        blocks.append(Table(
            columns=("scenario", "question", "true answer", "before", "after", "strength"),
            rows=tuple((g.scenario_id, g.question or "(not recorded)", g.true_answer or "(not recorded)", g.before,
                        g.after, number(g.strength)) for g in result.generations),
            numeric=(False, False, False, False, False, True)))
    blocks += [Paragraph(note, tone="muted") for note in result.notes]
    return blocks


def _responses(record: RunRecord) -> tuple[Block, ...] | None:
    if not record.responses:
        return None  # shown only when the run judged responses
    blocks: list[Block] = []
    judged = [r for r in record.responses if expected_call(r.condition) is not None]
    if judged:
        agreeing = sum(r.call == expected_call(r.condition) for r in judged)
        blocks.append(Paragraph(
            f"The call matches the scenario's condition (ground truth by construction) on {agreeing} of {len(judged)} "
            f"responses: {estimate_text(wilson_interval(agreeing, len(judged)))} (Wilson 95% interval)."))
    rows = []
    for r in record.responses:
        expected = expected_call(r.condition)
        agree = "n/a" if expected is None else "yes" if r.call == expected else f"no (expected {expected})"
        evidence = "; ".join(f"{k.replace('_', ' ')}: {_value_text(v)}"
                             for k, v in r.evidence.model_dump().items() if v is not None)
        rows.append((r.scenario_id, r.condition, r.response, Chip(r.call, _call_colour(r.call)), expected or "n/a",
                     agree, evidence))
    blocks.append(Table(columns=("scenario", "condition", "response", "call", "expected call", "matches condition?",
                                 "evidence"), rows=tuple(rows)))
    return tuple(blocks)


def _call_colour(call: str) -> str:
    from workbench.core.conditions import CONDITIONS, condition_colour

    condition = next((name for name, info in CONDITIONS.items() if info.expected_call == call), None)
    return condition_colour(condition) if condition else "#4b5563"


def _value_text(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return number(value) if isinstance(value, (int, float)) else str(value)


def _limitations(record: RunRecord) -> tuple[Block, ...]:
    return (Limitations(
        tuple(limitations(record)),
        none_found=f"None found by the automatic checks (every n at least {SMALL_N}, rate and AUROC intervals narrower "
                   f"than {WIDE_INTERVAL}, every control separated from the target, no unclear outcome)."),)
