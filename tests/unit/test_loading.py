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
    with pytest.raises(SiteError, match=r"model\.layers has 3 layers \(0-2\)"):
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
    assert loaded.site.module_path == "model.layers.2" and loaded.identity.startswith("v2/sae:")
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


# ----------------------------------------------------------------------------- the resolver


@pytest.fixture
def registry_dir(tmp_path, monkeypatch):
    """A registry with an SAE trained on the default model with an adapter, one without, and one
    trained on another model."""
    folder = tmp_path / "saes"
    folder.mkdir()
    (folder / "registry.yaml").write_text(
        "default: liar\nsaes:\n"
        "  liar: {path: liar, model: default, adapter: ../organism, site: model.layers.1}\n"
        "  base: {path: base, model: default, adapter: null, site: model.layers.1}\n"
        "  elsewhere: {path: elsewhere, model: some/model, site: model.layers.1}\n"
    )
    monkeypatch.setenv("WORKBENCH_SAES_DIR", str(folder))
    return folder


@pytest.mark.parametrize(("model_ref", "sae_ref", "adapter"), [
    ({}, {}, "organism"),  # the registry default SAE, on the model it was trained on
    ({}, {"registry": "liar"}, "organism"),
    ({"adapter": "auto"}, {"registry": "base"}, None),  # trained without an adapter
    ({}, {"registry": "elsewhere"}, None),
    ({}, {"path": "saes/x"}, None),  # auto means nothing without a registry SAE
    ({}, {"release": "gpt2-small-res-jb", "id": "blocks.8.hook_resid_pre"}, None),
    ({"gguf_file": "model.gguf"}, {"registry": "liar"}, None),  # another file than the SAE's model
    ({"source": "some/model"}, {"registry": "liar"}, None),
    ({"adapter": "adapters/mine"}, {"registry": "liar"}, "adapters/mine"),
    ({"adapter": None}, {"registry": "liar"}, None),
    ({"adapter": "none"}, {}, None),  # the CLI's --adapter none
])
def test_auto_adapter_is_the_registry_saes_own(registry_dir, model_ref, sae_ref, adapter):
    from workbench.model.resolve import ModelRef, SAERef, specs_from_refs

    model_spec, sae_spec = specs_from_refs(ModelRef(**model_ref), SAERef(**sae_ref))
    expected = str((registry_dir / ".." / "organism").resolve()) if adapter == "organism" else adapter
    assert model_spec.adapter == expected
    assert (model_spec.source, model_spec.gguf_file) == (model_ref.get("source", "default"), model_ref.get("gguf_file"))
    assert specs_from_refs(model_ref, sae_ref) == (model_spec, sae_spec)  # mappings (YAML blocks) work alike


@pytest.mark.parametrize(("sae_ref", "expected"), [
    ({}, SAESpec()),
    ({"registry": "base"}, SAESpec(registry_name="base")),
    ({"path": "saes/x"}, SAESpec(path="saes/x")),
    ({"release": "gpt2-small-res-jb", "id": "blocks.8.hook_resid_pre"},
     SAESpec(release="gpt2-small-res-jb", sae_id="blocks.8.hook_resid_pre")),
])
def test_every_sae_form_resolves_and_round_trips(registry_dir, sae_ref, expected):
    from workbench.model.resolve import ModelRef, SAERef, refs_from_specs, specs_from_refs

    model_spec, sae_spec = specs_from_refs(ModelRef(), SAERef(**sae_ref), site="model.layers.2")
    assert sae_spec == SAESpec(**{**expected.to_dict(), "site": "model.layers.2"})
    _, back = refs_from_specs(model_spec, sae_spec)
    assert back == SAERef(**sae_ref) or (sae_ref == {} and back == SAERef(registry=None))


@pytest.mark.parametrize(("model_ref", "sae_ref"), [
    ({}, {}),
    ({"adapter": "auto"}, {"registry": "liar"}),
    ({"adapter": None}, {"registry": "liar"}),  # the organism's SAE on the base model: stays explicit
    ({"adapter": "adapters/mine"}, {"registry": "liar"}),
    ({"source": "some/folder", "adapter": None}, {"path": "saes/x"}),
    ({"source": "some/folder", "adapter": "adapters/mine", "gguf_file": "m.gguf"},
     {"release": "r", "id": "blocks.0.hook_resid_post"}),
])
def test_refs_specs_refs_round_trip(registry_dir, model_ref, sae_ref):
    from workbench.model.resolve import ModelRef, SAERef, refs_from_specs, specs_from_refs

    refs = (ModelRef(**model_ref), SAERef(**sae_ref))
    assert refs_from_specs(*specs_from_refs(*refs)) == refs
    # two references of the same model: the written one is `auto`, and it names the same specs
    plain = (ModelRef(adapter=None), SAERef(registry="base"))
    assert refs_from_specs(*specs_from_refs(*plain)) == (ModelRef(adapter="auto"), SAERef(registry="base"))
    assert specs_from_refs(*refs_from_specs(*specs_from_refs(*plain))) == specs_from_refs(*plain)


def test_specs_become_portable_refs(registry_dir):
    from workbench.model.resolve import ModelRef, SAERef, refs_from_specs

    organism = str((registry_dir / ".." / "organism").resolve())
    model_ref, sae_ref = refs_from_specs(ModelSpec(adapter=organism), SAESpec(registry_name="liar"))
    assert model_ref == ModelRef(adapter="auto") and sae_ref == SAERef(registry="liar")  # no path of this machine
    model_ref, _ = refs_from_specs(ModelSpec(adapter=organism), SAESpec(path="saes/x"))
    assert model_ref.adapter == organism  # a folder SAE has no adapter of its own: the path stays
    model_ref, sae_ref = refs_from_specs(ModelSpec(source="some/folder"), SAESpec(path="saes/x"))
    assert model_ref == ModelRef(source="some/folder", adapter=None) and sae_ref == SAERef(path="saes/x")


@pytest.mark.parametrize(("model_ref", "sae_ref", "words"), [
    ({}, {"registry": "a", "path": "b"}, "named 2 ways .*give one of registry, path, or release \\+ id"),
    ({}, {"release": "gpt2-small-res-jb"}, "release needs an id too"),
    ({}, {"id": "blocks.8.hook_resid_pre"}, "give the release too"),
    ({}, {"registry": "a", "sae_id": "x"}, "bad SAE reference: unknown field 'sae_id' \\(known: registry, path, release, id\\)"),
    ({"source": " "}, {}, "model source is empty: give 'default'"),
    ({"adapters": "x"}, {}, "unknown field 'adapters' \\(known: source, adapter, gguf_file\\)"),
])
def test_bad_references_say_what_to_do(model_ref, sae_ref, words):
    from workbench.core.errors import WorkbenchError
    from workbench.model.resolve import specs_from_refs

    with pytest.raises(WorkbenchError, match=words):
        specs_from_refs(model_ref, sae_ref)


def test_load_resolves_and_checks_the_sae(tiny_model_dir, tiny_sae_dir, tmp_path):
    from workbench.model.resolve import ModelRef, SAERef, load

    model, sae = load(ModelRef(source=str(tiny_model_dir), adapter="auto"), SAERef(path=str(tiny_sae_dir)))
    assert model.spec == ModelSpec(source=str(tiny_model_dir)) and sae.site.name == "model.layers.1"
    _, other_site = load({"source": str(tiny_model_dir)}, {"path": str(tiny_sae_dir)}, site="model.layers.2")
    assert other_site.site.name == "model.layers.2"
    build_sae(d_in=32).save_model(tmp_path / "narrow")
    with pytest.raises(SAELoadError, match="pick an SAE trained on this model"):
        load(ModelRef(source=str(tiny_model_dir)), SAERef(path=str(tmp_path / "narrow")))
