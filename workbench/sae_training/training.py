"""Training a TopK SAE with sae-lens' ``SAETrainer`` fed by an in-memory activation iterator, and
saving it in sae-lens' on-disk format with float16 weights."""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from workbench.core.constants import SAE_WEIGHTS_FILENAME
from workbench.core.errors import WorkbenchError, check_number
from workbench.core.io import write_bytes_atomically
from workbench.model.loading import LoadedModel
from workbench.model.sites import Site
from workbench.sae_training.activations import SKIP_POSITIONS, collect_activations, work_model

__all__ = ["SAETrainingConfig", "TrainedSAE", "sae_metadata", "save_sae", "train_sae", "train_sae_on_activations"]


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

    def __post_init__(self) -> None:
        for name in ("d_sae", "k", "batch_size", "dead_feature_window"):
            check_number(name, getattr(self, name), minimum=1)
        if self.k > self.d_sae:
            raise WorkbenchError(f"k ({self.k}) must be at most d_sae ({self.d_sae}): a TopK SAE keeps k of its latents")
        check_number("lr", self.lr, above=0)
        check_number("epochs", self.epochs, above=0)
        check_number("aux_loss_coefficient", self.aux_loss_coefficient, minimum=0)
        check_number("lr_warm_up_steps", self.lr_warm_up_steps, minimum=0)
        check_number("lr_decay_fraction", self.lr_decay_fraction, minimum=0, maximum=1)

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


def sae_metadata(loaded_model: LoadedModel, site: Site, max_length: int) -> dict[str, Any]:
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
    config = SAETrainingConfig(d_sae=d_sae, k=k, lr=lr, seed=seed, epochs=epochs, batch_size=batch_size,
                               aux_loss_coefficient=aux_loss_coefficient, dead_feature_window=dead_feature_window)
    site = loaded_model.site(site_name)
    work = work_model(loaded_model, work_dtype)
    acts = collect_activations(loaded_model, site.name, texts, max_length=max_length, model=work)
    return train_sae_on_activations(acts, config, sae_metadata(loaded_model, site, max_length))


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
