"""LoRA outputs: the adapter saved unmerged, reloaded on its base, and refused when it does not
fit (tiny models, offline, seconds)."""

import json
import shutil

import pytest
import torch

from unlearnkit.errors import UnlearnError
from unlearnkit.models.loader import load_model, save_model_folder, save_trained
from unlearnkit.models.lora import LoraSettings, apply_lora
from unlearnkit.models.tiny import tiny_model
from unlearnkit.pipeline.run import RunConfig

pytestmark = pytest.mark.usefixtures("one_thread")
IDS = torch.tensor([[5, 40, 41, 42, 7, 60, 61, 3]])


def lora_model(base: str, rank: int = 4):
    """``base`` with a LoRA adapter whose B matrices are random (zero B would be the identity)."""
    model, tokenizer = load_model(base)
    model = apply_lora(model, LoraSettings(rank=rank))
    torch.manual_seed(1)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.2)
    return model, tokenizer


@torch.no_grad()
def logits(model):
    return model(input_ids=IDS).logits


def save_folder(tok, path, **shape):
    tiny_model(len(tok), **shape).save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return str(path)


def test_adapter_reloaded_on_its_base_gives_the_merged_models_logits(tiny_folder, tmp_path):
    from peft import PeftModel

    model, tokenizer = lora_model(str(tiny_folder))
    trained = logits(model)
    folder = save_trained(model, tokenizer, tmp_path / "out", base=str(tiny_folder))
    adapter = tmp_path / "out" / "adapter"
    assert folder == tmp_path / "out" / "model"  # evaluation keeps reading model/
    assert sorted(p.name for p in adapter.iterdir()) == [
        "README.md", "adapter_config.json", "adapter_model.safetensors"]  # no pickle, no tokenizer
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_folder.resolve())
    assert config["r"] == 4
    merged_model, _ = load_model(str(folder))
    base, _ = load_model(str(tiny_folder))
    base_logits = logits(base)
    unmerged = PeftModel.from_pretrained(base, str(adapter)).eval()  # the adapter as saved
    torch.testing.assert_close(logits(unmerged), logits(merged_model), atol=1e-5, rtol=0)
    torch.testing.assert_close(logits(merged_model), trained, atol=1e-5, rtol=0)
    assert (base_logits - trained).abs().max() > 1e-2  # the adapter changes the model


def test_adapter_only_output_loads_through_load_model(tiny_folder, tmp_path, monkeypatch):
    model, tokenizer = lora_model(str(tiny_folder))
    trained = logits(model)
    folder = save_trained(model, tokenizer, tmp_path / "out", base=str(tiny_folder),
                          lora_output="adapter")
    assert folder == tmp_path / "out" / "adapter" and not (tmp_path / "out" / "model").exists()
    monkeypatch.chdir(tmp_path)  # the recorded base is absolute: any working folder loads it
    loaded, loaded_tok = load_model(str(folder))
    assert not hasattr(loaded, "peft_config") and not loaded.training  # merged for inference
    torch.testing.assert_close(logits(loaded), trained, atol=1e-5, rtol=0)
    assert loaded_tok.pad_token == tokenizer.pad_token and len(loaded_tok) == len(tokenizer)


def test_model_identity_of_an_adapter_follows_its_weights_and_base(tiny_folder, tmp_path):
    from unlearnkit.training.inject import model_identity

    names = []
    for rank in (2, 4):
        model, tokenizer = lora_model(str(tiny_folder), rank=rank)
        folder = save_trained(model, tokenizer, tmp_path / f"r{rank}", base=str(tiny_folder),
                              lora_output="adapter")
        names.append(model_identity(str(folder)))
    assert names[0] != names[1]  # same folder name "adapter", other weights
    assert all(n.endswith("+" + model_identity(str(tiny_folder))) for n in names)


def test_full_fine_tuning_writes_only_the_model_folder(tiny_folder, tmp_path):
    model, tokenizer = load_model(str(tiny_folder))
    folder = save_trained(model, tokenizer, tmp_path / "out", base=str(tiny_folder))
    assert folder == tmp_path / "out" / "model" and (folder / "model.safetensors").is_file()
    assert not (tmp_path / "out" / "adapter").exists()


def test_merged_only_output_writes_no_adapter(tiny_folder, tmp_path):
    model, tokenizer = lora_model(str(tiny_folder))
    folder = save_trained(model, tokenizer, tmp_path / "out", base=str(tiny_folder),
                          lora_output="merged")
    assert folder.name == "model" and not (tmp_path / "out" / "adapter").exists()


@pytest.fixture()
def adapter(tiny_folder, tmp_path):
    """An adapter folder trained (randomised) on ``tiny_folder``."""
    model, tokenizer = lora_model(str(tiny_folder))
    return save_trained(model, tokenizer, tmp_path / "out", base=str(tiny_folder),
                        lora_output="adapter")


def set_base(folder, base):
    path = folder / "adapter_config.json"
    config = json.loads(path.read_text())
    if base is None:
        del config["base_model_name_or_path"]
    else:
        config["base_model_name_or_path"] = base
    path.write_text(json.dumps(config))


@pytest.mark.parametrize(("shape", "problem"), [
    ({"hidden": 32}, r"does not fit its base model \(.*size mismatch"),  # another width
    ({"layers": 1}, r"does not fit its base model: \d+ tensors in one but not the other"),
])
def test_adapter_on_another_base_model_is_refused(adapter, tok, tmp_path, shape, problem):
    set_base(adapter, save_folder(tok, tmp_path / "other", **shape))
    with pytest.raises(UnlearnError, match=problem) as err:
        load_model(str(adapter))
    assert "set 'base_model_name_or_path'" in str(err.value)  # the fix
    assert "model it was trained from" in str(err.value)


def test_adapter_with_pickle_weights_only_is_refused(adapter):
    (adapter / "adapter_model.safetensors").rename(adapter / "adapter_model.bin")
    with pytest.raises(UnlearnError, match=r"no adapter_model\.safetensors .*adapter_model\.bin"
                       r".*safetensors only: save the adapter again"):
        load_model(str(adapter))


def test_adapter_without_or_with_a_missing_base_is_refused(adapter, tiny_folder):
    set_base(adapter, None)
    with pytest.raises(UnlearnError, match="records no base model; set 'base_model_name_or"):
        load_model(str(adapter))
    set_base(adapter, str(adapter))
    with pytest.raises(UnlearnError, match="names the adapter itself as its base model"):
        load_model(str(adapter))
    set_base(adapter, str(tiny_folder))
    shutil.rmtree(tiny_folder)
    with pytest.raises(UnlearnError, match=r"cannot load the base model of adapter .*neither"):
        load_model(str(adapter))
    (adapter / "adapter_config.json").write_text("{not json")
    with pytest.raises(UnlearnError, match=r"cannot read .*adapter_config\.json"):
        load_model(str(adapter))


def test_run_config_checks_lora_output():
    assert RunConfig().lora_output == "both"
    RunConfig(lora=LoraSettings(rank=2), lora_output="adapter")
    with pytest.raises(UnlearnError, match=r"lora_output: adapter .* lora\.rank is 0"):
        RunConfig(lora_output="adapter")
    with pytest.raises(UnlearnError, match="lora_output must be one of both, merged, adapter"):
        RunConfig(lora_output="lora")


def test_model_identity_of_a_folder_follows_its_weights(tok, tmp_path):
    from unlearnkit.training.inject import model_identity

    # two runs' model/ folders: same name, same config.json, other weights
    names = []
    for seed in (0, 1):
        folder = tmp_path / f"run{seed}" / "model"
        save_model_folder(tiny_model(len(tok), seed=seed), tok, folder)
        names.append(model_identity(str(folder)))
    assert (tmp_path / "run0/model/config.json").read_bytes() == \
        (tmp_path / "run1/model/config.json").read_bytes()
    assert names[0] != names[1]
    # trained again in place: the identity follows the new weights
    save_model_folder(tiny_model(len(tok), seed=1), tok, tmp_path / "run0" / "model")
    assert model_identity(str(tmp_path / "run0" / "model")) == names[1]
