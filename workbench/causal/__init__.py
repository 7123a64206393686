"""Stage 4, causal: editing the model and measuring what changes. The registry of edit kinds
(ablate, steer, patch, clamp) in ``edits``; batched edited forward passes and generation over a
sweep of strengths in ``sweeps``; behavioural metrics and matched controls in ``measurements``; and
the one experiment engine (an experiment = edit, site, positions, scenarios, strengths and their
unit, metric, controls, seed) in ``experiment``, which the causal lab, hypothesis tests, the
incrimination protocol and the benchmarks all run through."""
