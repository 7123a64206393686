"""The plain-torch SAE encoder (``model.saes.SAEEncoder``) against sae-lens' own ``encode``, for every
architecture it supports, loaded the way the workbench loads SAEs (sae-lens' on-disk format)."""

from __future__ import annotations

import pytest
import torch

from workbench.core.errors import SAELoadError
from workbench.model.saes import ENCODER_ARCHITECTURES, SAESpec, decoder_rows, load_sae, sae_encoder

D_IN, D_SAE = 64, 128


def _randomise(sae, seed: int) -> None:
    """Random weights and biases everywhere (sae-lens initialises biases to zero, which would hide a
    missing bias term), decoder rows of varied norms."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in sae.named_parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
        sae.W_dec.mul_(torch.rand(D_SAE, 1, generator=generator) + 0.5)
        if hasattr(sae, "threshold"):
            sae.threshold.copy_(torch.rand(D_SAE, generator=generator) * 0.5)


def build_any_sae(architecture: str, seed: int = 0, **overrides):
    """A tiny sae-lens SAE of an architecture (``batchtopk``: a BatchTopK training SAE, saved for
    inference by ``saved``) with random weights."""
    import sae_lens

    if architecture == "batchtopk":
        config = sae_lens.BatchTopKTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, k=6, **overrides)
        sae = sae_lens.BatchTopKTrainingSAE(config)
        _randomise(sae, seed)
        sae.topk_threshold = torch.tensor(0.4, dtype=torch.double)
    else:
        classes = {"standard": (sae_lens.StandardSAE, sae_lens.StandardSAEConfig, {}),
                   "topk": (sae_lens.TopKSAE, sae_lens.TopKSAEConfig, {"k": 8}),
                   "jumprelu": (sae_lens.JumpReLUSAE, sae_lens.JumpReLUSAEConfig, {}),
                   "gated": (sae_lens.GatedSAE, sae_lens.GatedSAEConfig, {})}
        sae_class, config_class, defaults = classes[architecture]
        sae = sae_class(config_class(d_in=D_IN, d_sae=D_SAE, **{**defaults, **overrides}))
        _randomise(sae, seed)
    sae.cfg.metadata.hook_name = "model.layers.1"
    return sae


def saved(sae, folder):
    """The SAE as the workbench loads it: written in sae-lens' on-disk format (the inference form of a
    training SAE) and read back."""
    from sae_lens import SAE

    (sae.save_inference_model if hasattr(sae, "save_inference_model") else sae.save_model)(folder)
    return SAE.load_from_disk(folder, device="cpu", dtype="float32")


CASES = [
    ("standard", {}),
    ("standard", {"apply_b_dec_to_input": False}),
    ("standard", {"normalize_activations": "layer_norm"}),
    ("standard", {"normalize_activations": "constant_norm_rescale"}),
    ("standard", {"normalize_activations": "expected_average_only_in"}),
    ("topk", {}),
    ("topk", {"rescale_acts_by_decoder_norm": True}),
    ("topk", {"normalize_activations": "layer_norm", "apply_b_dec_to_input": False}),
    ("jumprelu", {}),
    ("batchtopk", {}),
    ("gated", {}),
    ("gated", {"normalize_activations": "constant_norm_rescale"}),
]


@pytest.mark.parametrize(("architecture", "overrides"), CASES)
def test_plain_encoder_equals_sae_lens(architecture, overrides, tmp_path):
    sae = saved(build_any_sae(architecture, **overrides), tmp_path / "sae")
    encoder = sae_encoder(sae)
    assert encoder.architecture == ("jumprelu" if architecture == "batchtopk" else architecture)
    x = torch.randn(3, 7, D_IN) * 2
    with torch.no_grad():
        expected = sae.encode(x)
    got = encoder.encode(x)
    assert got.shape == expected.shape and got.dtype == torch.float32
    assert (expected > 0).any() and (expected == 0).any(), "the case should have both active and silent features"
    assert torch.allclose(got, expected, atol=1e-5)
    assert torch.equal(got > 0, expected > 0)
    # narrowed to some features: the same activations (TopK still ranks every feature)
    features = [int(f) for f in torch.argsort((expected > 0).sum((0, 1)), descending=True)[:5]] + [0]
    assert torch.allclose(encoder.select(features).encode(x), expected[..., features], atol=1e-5)
    assert torch.allclose(encoder.select(features).select([4, 0]).encode(x), expected[..., [features[4], features[0]]],
                          atol=1e-5)


@pytest.mark.parametrize("rescale", [False, True])
def test_decoder_rows_are_what_a_unit_of_the_feature_adds(rescale, tmp_path):
    sae = saved(build_any_sae("topk", rescale_acts_by_decoder_norm=rescale), tmp_path / "sae")
    codes = torch.zeros(2, D_SAE)
    codes[0, 5], codes[1, 9] = 1.0, 2.5
    with torch.no_grad():
        added = sae.decode(codes) - sae.b_dec
    assert torch.allclose(added, decoder_rows(sae, [5, 9]) * torch.tensor([[1.0], [2.5]]), atol=1e-5)


def test_architectures_the_encoder_does_not_know_are_refused_at_load(tiny_model, tmp_path):
    from sae_lens import AbsTopKSAE, AbsTopKSAEConfig

    config = AbsTopKSAEConfig(d_in=D_IN, d_sae=D_SAE, k=4)
    config.metadata.hook_name = "model.layers.1"
    AbsTopKSAE(config).save_model(tmp_path / "abstopk")
    with pytest.raises(SAELoadError, match="abstopk.*supports " + ", ".join(ENCODER_ARCHITECTURES)):
        load_sae(SAESpec(path=str(tmp_path / "abstopk")), tiny_model)


def test_loaded_sae_encodes_through_the_plain_encoder(tiny_sae):
    x = torch.randn(4, 64) * 3
    assert torch.equal(tiny_sae.encode(x), tiny_sae.encoder.encode(x))
    assert torch.allclose(tiny_sae.encode(x), tiny_sae.sae.encode(x))
