"""Sites, model and SAE loading, and the errors a user can hit."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import build_sae
from workbench.core.errors import FeatureIndexError, ModelLoadError, SAELoadError, SiteError
from workbench.model.loading import ModelSpec, load_model
from workbench.model.saes import SAESpec, load_sae, read_registry
from workbench.model.sites import resolve_site, to_hook_name, to_module_name


@pytest.mark.parametrize(
    ("name", "module", "reads_input"),
    [
        ("blocks.2.hook_resid_post", "model.layers.2", False),
        ("blocks.2.hook_resid_pre", "model.layers.2", True),
        ("blocks.1.hook_mlp_out", "model.layers.1.mlp", False),
        ("blocks.0.hook_attn_out", "model.layers.0.self_attn", False),
        ("model.layers.2", "model.layers.2", False),
    ],
)
def test_site_names_translate_both_ways(tiny_model, name, module, reads_input):
    assert to_module_name(name, "model.layers") == (module, reads_input)
    site = resolve_site(name, tiny_model.hf_model)
    assert site.module_path == module and site.reads_input == reads_input
    hook = to_hook_name(site, "model.layers")
    assert resolve_site(hook, tiny_model.hf_model) == site


def test_gpt2_style_layer_container():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=50))
    assert resolve_site("blocks.1.hook_resid_post", model).module_path == "transformer.h.1"


def test_missing_site_says_what_exists(tiny_model):
    with pytest.raises(SiteError, match=r"3 layers .*model\.layers\.0 to model\.layers\.2"):
        tiny_model.site("model.layers.7")


def test_sae_width_mismatch_is_explained(tiny_model, tmp_path):
    build_sae(d_in=32, hook_name="model.layers.1").save_model(tmp_path / "narrow")
    with pytest.raises(SAELoadError, match="SAE expects d_in=32 but model.layers.1 outputs 64"):
        load_sae(SAESpec(path=str(tmp_path / "narrow")), tiny_model)


def test_sae_on_missing_site(tiny_model, tmp_path):
    build_sae(hook_name="blocks.9.hook_resid_post").save_model(tmp_path / "deep")
    with pytest.raises(SiteError, match="does not exist"):
        load_sae(SAESpec(path=str(tmp_path / "deep")), tiny_model)


def test_missing_sae_folder(tiny_model, tmp_path):
    with pytest.raises(SAELoadError, match="missing cfg.json, sae_weights.safetensors"):
        load_sae(SAESpec(path=str(tmp_path / "nothing")), tiny_model)


def test_feature_index_out_of_range(tiny_sae):
    assert tiny_sae.check_feature(127) == 127
    with pytest.raises(FeatureIndexError, match="128 features"):
        tiny_sae.check_feature(128)


def test_loaded_sae_encodes_like_sae_lens(tiny_sae):
    x = torch.randn(5, 64)
    assert torch.allclose(tiny_sae.encode(x), tiny_sae.sae.encode(x))
    assert ((tiny_sae.encode(x) > 0).sum(-1) <= 8).all()


def test_registry_entry_loads(tiny_model, tmp_path, monkeypatch):
    build_sae(hook_name="model.layers.2").save_model(tmp_path / "saes" / "mine")
    (tmp_path / "saes" / "registry.yaml").write_text(
        "default: mine\nsaes:\n  mine:\n    path: mine\n    model: tiny\n    site: model.layers.2\n"
    )
    monkeypatch.setenv("WORKBENCH_SAES_DIR", str(tmp_path / "saes"))
    assert read_registry().default == "mine"
    loaded = load_sae(SAESpec(), tiny_model)
    assert loaded.site.module_path == "model.layers.2" and loaded.identity.startswith("registry:mine:")
    with pytest.raises(SAELoadError, match="known: mine"):
        load_sae(SAESpec(registry_name="other"), tiny_model)


def test_missing_local_model_folder():
    with pytest.raises(ModelLoadError, match="no model folder"):
        load_model(ModelSpec(source="./no/such/model"))


def test_missing_adapter_folder(tiny_tokenizer, tmp_path):
    from tests.conftest import build_tiny_hf_model

    folder = tmp_path / "model"
    build_tiny_hf_model(tiny_tokenizer).save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    with pytest.raises(ModelLoadError, match="no LoRA adapter"):
        load_model(ModelSpec(source=str(folder), adapter=str(tmp_path / "adapter")))


def test_local_model_with_lora_adapter_is_merged(tiny_tokenizer, tmp_path):
    from peft import LoraConfig, get_peft_model

    from tests.conftest import build_tiny_hf_model

    folder = tmp_path / "model"
    base = build_tiny_hf_model(tiny_tokenizer)
    base.save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    peft_model = get_peft_model(build_tiny_hf_model(tiny_tokenizer), LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    ids = torch.tensor([[1, 5, 9, 12]])
    with torch.no_grad():
        expected = peft_model(input_ids=ids).logits
        plain = base(input_ids=ids).logits
    loaded = load_model(ModelSpec(source=str(folder), adapter=str(tmp_path / "adapter")))
    with torch.no_grad():
        merged = loaded.hf_model(input_ids=ids).logits
    assert torch.allclose(merged, expected, atol=1e-4)
    assert not torch.allclose(merged, plain, atol=1e-4)
    assert "+adapter:" in loaded.identity


def test_unreadable_gguf_is_explained(tmp_path):
    (tmp_path / "broken.gguf").write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ModelLoadError, match="cannot read GGUF file broken.gguf"):
        load_model(ModelSpec(source=str(tmp_path), gguf_file="broken.gguf"))


def test_model_spec_round_trips_through_json():
    spec = ModelSpec(source="gpt2", adapter="adapters/x", device_map="auto")
    assert ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict())) | {"unknown": 1}) == spec
