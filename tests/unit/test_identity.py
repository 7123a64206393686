"""Identities come from what computes (weights, config, tokenizer), never from documentation; file digests
are cached on disk by (path, size, mtime); records with identities computed the old way keep loading and
say so. Tiny models, adapters and SAEs are built in-process."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.conftest import build_sae, build_tiny_hf_model
from workbench.core.constants import IDENTITY_PREFIX
from workbench.hypotheses import compare_records, identity_differences
from workbench.hypotheses.records import read_record
from workbench.model import identity as identity_module
from workbench.model.identity import digest_cache_path, file_digest, identity_scheme, old_identity_note
from workbench.model.loading import ModelSpec, load_model, model_identity, wrap
from workbench.model.saes import SAESpec, load_sae, sae_identity
from workbench.report import build_report, to_markdown
from workbench.report.document import Paragraph

ROOT = Path(__file__).resolve().parents[2]
# The committed records as they were first written (before their rerun recorded v2 identities), frozen.
OLD_RECORDS = [*sorted((ROOT / "tests" / "fixtures" / "records-v2").glob("*.json")),
               ROOT / "tests" / "fixtures" / "run-record-v1.json"]
#: A time well before any test runs: files set to it are past the racy window, so their digests are cached.
PAST_NS = 1_600_000_000 * 10**9


def _age(*paths: Path, ns: int = PAST_NS) -> None:
    """Set the files' modification time to ``ns`` (as if written long ago)."""
    for path in paths:
        os.utime(path, ns=(ns, ns))


def _change_one_weight(path: Path) -> None:
    """Add 1 to the first element of the first tensor of a safetensors file (same size, same names)."""
    tensors = load_file(path)
    name = sorted(tensors)[0]
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] += 1.0
    save_file(tensors, path, metadata={"format": "pt"})


def _edit_json(path: Path, key: str, value) -> None:
    data = json.loads(path.read_text())
    assert key in data, f"{path.name} has no {key}"
    data[key] = value
    path.write_text(json.dumps(data, indent=2))


@pytest.fixture
def model_dir(tmp_path, tiny_tokenizer) -> Path:
    """A tiny model folder (weights, config, tokenizer with chat template) with a model card."""
    folder = tmp_path / "model"
    build_tiny_hf_model(tiny_tokenizer).save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    (folder / "README.md").write_text("# tiny model\nA card.\n")
    return folder


@pytest.fixture
def adapter_dir(tmp_path, tiny_tokenizer) -> Path:
    """A LoRA adapter for the tiny model (peft writes its own README.md card beside the weights)."""
    from peft import LoraConfig, get_peft_model

    folder = tmp_path / "adapter"
    peft_model = get_peft_model(build_tiny_hf_model(tiny_tokenizer),
                                LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.save_pretrained(folder)
    assert (folder / "README.md").is_file() and (folder / "adapter_model.safetensors").is_file()
    return folder


@pytest.fixture
def sae_dir(tmp_path) -> Path:
    folder = tmp_path / "sae"
    build_sae(hook_name="model.layers.1").save_model(folder)
    (folder / "README.md").write_text("# tiny SAE\n")
    return folder


# ----------------------------------------------------------------------------- what counts


def test_a_model_card_edit_keeps_the_identity_a_weight_config_or_tokenizer_change_moves_it(model_dir):
    spec = ModelSpec(source=str(model_dir))
    first = model_identity(spec)
    assert first.startswith(f"{IDENTITY_PREFIX}local:") and identity_scheme(first) == "v2"
    (model_dir / "README.md").write_text("# tiny model\nA rewritten card with new numbers.\n")
    (model_dir / "notes.md").write_text("training notes\n")
    assert model_identity(spec) == first

    _edit_json(model_dir / "config.json", "rms_norm_eps", 1e-3)
    after_config = model_identity(spec)
    assert after_config != first

    _change_one_weight(model_dir / "model.safetensors")
    after_weight = model_identity(spec)
    assert after_weight not in (first, after_config)

    template = model_dir / "chat_template.jinja"  # where transformers saves the chat template
    assert template.is_file()
    template.write_text("{{ messages[0]['content'] }}")
    after_template = model_identity(spec)
    assert after_template not in (first, after_config, after_weight)

    _edit_json(model_dir / "tokenizer_config.json", "eos_token", "<|endoftext|>")
    assert model_identity(spec) not in (first, after_config, after_weight, after_template)


def test_the_weights_counted_are_the_ones_transformers_loads(model_dir):
    spec = ModelSpec(source=str(model_dir))
    first = model_identity(spec)
    # a stray .bin beside model.safetensors is not loaded (transformers prefers safetensors): not counted
    torch.save({"x": torch.ones(2)}, model_dir / "pytorch_model.bin")
    assert model_identity(spec) == first
    # without model.safetensors the .bin is what loads: counted
    (model_dir / "model.safetensors").unlink()
    assert model_identity(spec) != first


def test_an_adapter_card_edit_keeps_the_identity_its_weights_or_config_move_it(model_dir, adapter_dir):
    spec = ModelSpec(source=str(model_dir), adapter=str(adapter_dir))
    first = model_identity(spec)
    base, adapter = first.split("+adapter:")
    assert base == model_identity(ModelSpec(source=str(model_dir))) and len(adapter) == 16
    (adapter_dir / "README.md").write_text("# the organism\nMeasured: lies 0.88 of the time (new eval).\n")
    (adapter_dir / "training.json").write_text("{}")
    assert model_identity(spec) == first

    _edit_json(adapter_dir / "adapter_config.json", "lora_alpha", 64)
    after_config = model_identity(spec)
    assert after_config != first and after_config.startswith(base + "+adapter:")

    _change_one_weight(adapter_dir / "adapter_model.safetensors")
    assert model_identity(spec) not in (first, after_config)


def test_an_sae_card_edit_keeps_the_identity_its_weights_or_config_move_it(tiny_model, sae_dir, tmp_path, monkeypatch):
    loaded = load_sae(SAESpec(path=str(sae_dir)), tiny_model)
    first = loaded.identity
    assert first == sae_identity(sae_dir) and first.startswith(f"{IDENTITY_PREFIX}sae:")
    # the same weights named by a registry entry have the same identity (the name is in the spec, not here)
    (tmp_path / "registry.yaml").write_text(f"default: mine\nsaes:\n  mine:\n    path: {sae_dir}\n"
                                            "    model: tiny\n    site: model.layers.1\n")
    monkeypatch.setenv("WORKBENCH_SAES_DIR", str(tmp_path))
    assert load_sae(SAESpec(), tiny_model).identity == first

    (sae_dir / "README.md").write_text("# tiny SAE\nNew evaluation numbers.\n")
    (sae_dir / "training.json").write_text("{}")
    assert sae_identity(sae_dir) == first
    cfg = json.loads((sae_dir / "cfg.json").read_text())
    key = "k" if "k" in cfg else "apply_b_dec_to_input"
    _edit_json(sae_dir / "cfg.json", key, 4 if key == "k" else not cfg[key])
    after_config = sae_identity(sae_dir)
    assert after_config != first
    _change_one_weight(sae_dir / "sae_weights.safetensors")
    assert sae_identity(sae_dir) not in (first, after_config)


def test_the_gguf_name_is_in_the_identity_only_where_it_is_used(tmp_path, monkeypatch):
    from workbench.model import loading

    packaged = tmp_path / "package" / "Packaged.Q4.gguf"
    packaged.parent.mkdir()
    packaged.write_bytes(b"GGUF" + b"\1" * 64)
    monkeypatch.setattr(loading, "default_gguf_path", lambda: packaged)
    default = model_identity(ModelSpec())
    assert default.startswith(f"{IDENTITY_PREFIX}default:") and "gguf" not in default
    # the default loads its own GGUF: a file name given with it is not used, so it is not in the identity
    assert model_identity(ModelSpec(gguf_file="other.gguf")) == default
    packaged.write_bytes(b"GGUF" + b"\2" * 64)  # the packaged file's bytes are what count
    assert model_identity(ModelSpec()) != default

    folder = tmp_path / "ggufs"
    folder.mkdir()
    (folder / "a.gguf").write_bytes(b"GGUF" + b"\3" * 64)
    (folder / "b.gguf").write_bytes(b"GGUF" + b"\4" * 64)
    a = model_identity(ModelSpec(source=str(folder), gguf_file="a.gguf"))
    b = model_identity(ModelSpec(source=str(folder), gguf_file="b.gguf"))
    assert a.startswith(f"{IDENTITY_PREFIX}local:") and a.endswith("#gguf=a.gguf") and b.endswith("#gguf=b.gguf")
    assert a.split("#")[0] != b.split("#")[0]  # the digest is of the file used
    (folder / "README.md").write_text("card")
    assert model_identity(ModelSpec(source=str(folder), gguf_file="a.gguf")) == a
    hub = model_identity(ModelSpec(source="org/model", gguf_file="m.gguf"))
    assert hub == f"{IDENTITY_PREFIX}hf:org/model@main#gguf=m.gguf"


def test_a_hub_model_is_named_by_id_and_commit_without_network(tiny_tokenizer):
    assert model_identity(ModelSpec(source="org/model")) == f"{IDENTITY_PREFIX}hf:org/model@main"
    assert model_identity(ModelSpec(source="org/model", revision="v1")) == f"{IDENTITY_PREFIX}hf:org/model@v1"
    assert model_identity(ModelSpec(source="org/model", revision="main"), commit="abc123") == \
        f"{IDENTITY_PREFIX}hf:org/model@abc123"
    model = build_tiny_hf_model(tiny_tokenizer)
    model.config._commit_hash = "0123abcd"  # what transformers sets when it resolves a hub revision
    loaded = wrap(model, tiny_tokenizer, ModelSpec(source="org/tiny"))
    assert loaded.identity == f"{IDENTITY_PREFIX}hf:org/tiny@0123abcd"


def test_a_loaded_model_carries_the_v2_identity(model_dir, adapter_dir):
    spec = ModelSpec(source=str(model_dir), adapter=str(adapter_dir))
    assert load_model(spec).identity == model_identity(spec)


# ----------------------------------------------------------------------------- the digest cache


class HashSpy:
    """Counts the files ``identity`` reads to hash (the slow step the cache saves)."""

    def __init__(self, monkeypatch):
        self.read: list[str] = []
        real = identity_module._hash_file

        def spy(path):
            self.read.append(Path(path).name)
            return real(path)

        monkeypatch.setattr(identity_module, "_hash_file", spy)


def test_a_second_identity_reads_no_file_and_a_changed_file_is_read_again(model_dir, monkeypatch):
    files = [p for p in model_dir.iterdir() if p.is_file()]
    _age(*files)
    spy = HashSpy(monkeypatch)
    spec = ModelSpec(source=str(model_dir))
    first = model_identity(spec)
    assert "model.safetensors" in spy.read and "config.json" in spy.read and "README.md" not in spy.read
    assert digest_cache_path(model_dir / "model.safetensors").is_file()
    spy.read.clear()
    assert model_identity(spec) == first and spy.read == []  # every digest came from the cache

    # same size, new modification time: read again
    weights = model_dir / "model.safetensors"
    size = weights.stat().st_size
    _change_one_weight(weights)
    _age(weights, ns=PAST_NS + 10**9)
    assert weights.stat().st_size == size
    changed = model_identity(spec)
    assert spy.read == ["model.safetensors"] and changed != first
    spy.read.clear()
    assert model_identity(spec) == changed and spy.read == []

    # new size, same modification time: read again
    config = model_dir / "config.json"
    stamp, size = config.stat().st_mtime_ns, config.stat().st_size
    _edit_json(config, "rms_norm_eps", 0.000123456)
    _age(config, ns=stamp)
    assert config.stat().st_size != size
    assert model_identity(spec) != changed and spy.read == ["config.json"]


def test_the_cache_is_keyed_by_size_and_mtime_and_a_fresh_file_is_not_cached(tmp_path, monkeypatch):
    spy = HashSpy(monkeypatch)
    path = tmp_path / "weights.bin"
    path.write_bytes(b"a" * 100)
    _age(path)
    first = file_digest(path)
    assert file_digest(path) == first and spy.read == ["weights.bin"]
    # bytes changed behind the cache's back with size and mtime kept: the key did not change, the cache answers
    path.write_bytes(b"b" * 100)
    _age(path)
    assert file_digest(path) == first and spy.read == ["weights.bin"]
    _age(path, ns=PAST_NS + 1)  # one nanosecond later is another key
    assert file_digest(path) != first and spy.read == ["weights.bin"] * 2

    # a file written just now is hashed every time until it is older than the racy window
    fresh = tmp_path / "fresh.bin"
    fresh.write_bytes(b"c" * 10)
    file_digest(fresh)
    file_digest(fresh)
    assert spy.read.count("fresh.bin") == 2 and not digest_cache_path(fresh).exists()


def test_a_damaged_cache_entry_is_recomputed(tmp_path, monkeypatch):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"x" * 10)
    _age(path)
    first = file_digest(path)
    digest_cache_path(path).write_text("{ not json")
    spy = HashSpy(monkeypatch)
    assert file_digest(path) == first and spy.read == ["weights.bin"]
    spy.read.clear()
    assert file_digest(path) == first and spy.read == []  # and the entry was replaced


# ----------------------------------------------------------------------------- old records


@pytest.mark.parametrize("path", OLD_RECORDS, ids=lambda p: p.name)
def test_records_with_old_identities_load_and_their_report_says_so(path):
    record = read_record(path)
    assert identity_scheme(record.setup.model_identity) == "old"
    notes = record.setup.identity_notes()
    assert notes and all("computed the old way" in note for note in notes)
    document = build_report(record)
    setup = document.section("setup")
    texts = [block.text for block in setup.blocks if isinstance(block, Paragraph)]
    assert any("Model identity computed the old way" in text and "documentation included" in text for text in texts)
    assert "rerun to record a v2 identity" in to_markdown(document)


def test_a_record_with_v2_identities_has_no_note():
    record = read_record(OLD_RECORDS[0])
    setup = record.setup.model_copy(update={"model_identity": "v2/default:0123456789abcdef+adapter:fedcba9876543210",
                                            "sae_identity": "v2/sae:00112233aabbccdd"})
    current = record.model_copy(update={"setup": setup})
    assert setup.identity_notes() == []
    texts = [b.text for b in build_report(current).section("setup").blocks if isinstance(b, Paragraph)]
    assert not any("old way" in text for text in texts)
    # only the old one of the two is named
    half = record.setup.model_copy(update={"sae_identity": "v2/sae:00112233aabbccdd"})
    assert len(half.identity_notes()) == 1 and half.identity_notes()[0].startswith("Model identity")


def test_old_identity_note():
    assert old_identity_note("v2/sae:00112233aabbccdd", "sae") is None
    assert "cfg.json not included" in old_identity_note("registry:x:0011", "sae")
    assert "whole folder" in old_identity_note("default:x.gguf:1+adapter:ab", "model")


def test_identity_differences_compare_only_v2_with_v2():
    record = read_record(OLD_RECORDS[0])

    def with_ids(model: str, sae: str):
        return record.model_copy(update={"setup": record.setup.model_copy(
            update={"model_identity": model, "sae_identity": sae})})

    a = with_ids("v2/default:aaaa+adapter:1111", "v2/sae:cccc")
    assert identity_differences(a, a) == []
    assert identity_differences(a, with_ids("v2/default:aaaa+adapter:2222", "v2/sae:cccc")) == [
        "model identity: v2/default:aaaa+adapter:1111 vs v2/default:aaaa+adapter:2222"]
    assert identity_differences(a, with_ids("v2/default:aaaa+adapter:1111", "v2/sae:dddd")) == [
        "SAE identity: v2/sae:cccc vs v2/sae:dddd"]
    # old vs v2 (a committed record vs its rerun) cannot be compared; old vs old neither
    assert identity_differences(record, a) == [] and identity_differences(a, record) == []
    assert identity_differences(record, with_ids("default:other", "registry:other")) == []
    # the numbers comparison is not about identities
    assert compare_records(a, with_ids("v2/default:bbbb", "v2/sae:dddd")) == []


# ----------------------------------------------------------------------------- the calibration cache key


def test_the_calibration_key_survives_a_card_edit_and_not_a_weight_change(model_dir, adapter_dir, tiny_sae,
                                                                          tiny_scenarios):
    from workbench.incrimination import calibration_key

    train = [s for s in tiny_scenarios if s.split.value == "train"][:8]
    spec = ModelSpec(source=str(model_dir), adapter=str(adapter_dir))

    def key():
        model = load_model(spec)
        assert model.identity.startswith(IDENTITY_PREFIX)
        return calibration_key(model, tiny_sae, train, [3, 7]).digest()

    first = key()
    (adapter_dir / "README.md").write_text("# organism\nRe-evaluated: new rates.\n")
    (model_dir / "README.md").write_text("# tiny\nNew card.\n")
    assert key() == first
    _change_one_weight(adapter_dir / "adapter_model.safetensors")
    assert key() != first
