"""Several threads on one model (as the app's sessions share one cached model) get exactly the
numbers each would get alone: captures, edited sweeps with controls, and greedy generation."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import uuid

import pytest
import torch

from workbench.causal.experiment import EditSettings, Experiment, ExperimentContext, run_experiment
from workbench.features.capture import inputs_from_scenarios, inputs_from_texts, run_capture
from workbench.model.generation import greedy_decode

TEXTS = ["The capital of France is Paris.", "quick brown fox", "Repeat after me: the capital of Spain is Rome."]


@pytest.fixture(scope="module")
def active(tiny_model, tiny_sae, tiny_scenarios):
    ctx = ExperimentContext(tiny_model, tiny_sae, tiny_scenarios, site=tiny_sae.site.name)
    return tuple(int(f) for f in torch.argsort(ctx.density(), descending=True)[:2])


def jobs(tiny_model, tiny_sae, tiny_scenarios, active, root):
    """Mixed work, each job a function of nothing that returns plain tensors to compare."""

    def capture(i: int):
        def job():
            inputs = inputs_from_scenarios(tiny_scenarios[i:i + 4]) + inputs_from_texts(TEXTS, prefix=f"t{i}")
            result = run_capture(tiny_model, [tiny_sae], inputs, batch_size=3, max_new_tokens=3,
                                 store_root=root / uuid.uuid4().hex)  # fresh: no cache hit
            acts = result.sites[tiny_sae.site.name]
            return [acts.row_ptr, acts.features, acts.values, result.token_ids]
        return job

    def sweep(kind: str, condition: str):
        def job():
            experiment = Experiment(edit=EditSettings(kind=kind), features=active, condition=condition, n_scenarios=4,
                                    strengths=(0.0, 1.0, 3.0), n_random=1, n_generations=1, neutral_kl=False,
                                    max_new_tokens=2, other_conditions=("honest",))
            result = run_experiment(tiny_model, tiny_sae, experiment, tiny_scenarios)
            values = [torch.tensor([e.value for e in curve.effects]) for curve in result.curves]
            return values + [torch.tensor([curve.unedited.value for curve in result.curves])]
        return job

    def generate():
        # padded by hand, as generate_answers does: a fast tokenizer's padding=True sets padding on
        # the shared Rust tokenizer and is not safe across threads (the workbench never asks for it)
        encoded = [tiny_model.tokenizer(text)["input_ids"] for text in TEXTS]
        width = max(len(ids) for ids in encoded)
        input_ids = torch.zeros((len(encoded), width), dtype=torch.long)
        attention = torch.zeros((len(encoded), width), dtype=torch.long)
        for row, ids in enumerate(encoded):
            input_ids[row, :len(ids)] = torch.tensor(ids)
            attention[row, :len(ids)] = 1
        rows = greedy_decode(tiny_model, input_ids, attention, max_new_tokens=4)
        return [torch.tensor(row + [-1] * (4 - len(row))) for row in rows]

    return [capture(0), sweep("ablate", "lie"), generate, capture(5), sweep("steer", "parrot"), generate]


def test_threads_on_one_model_get_the_numbers_they_would_get_alone(tiny_model, tiny_sae, tiny_scenarios, active,
                                                                   tmp_path):
    work = jobs(tiny_model, tiny_sae, tiny_scenarios, active, tmp_path)
    alone = [job() for job in work]
    with ThreadPoolExecutor(max_workers=len(work)) as pool:
        together = list(pool.map(lambda job: job(), work * 2))  # each job twice, all at once
    for i, got in enumerate(together):
        expected = alone[i % len(work)]
        assert len(got) == len(expected)
        for a, b in zip(got, expected):
            a, b = torch.as_tensor(a), torch.as_tensor(b)
            assert a.shape == b.shape and torch.allclose(a.float(), b.float(), atol=1e-6), f"job {i % len(work)}"
