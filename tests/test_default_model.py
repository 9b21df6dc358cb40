"""The real default model: GGUF conversion into the cache, then a greedy answer.

Marked slow (about a minute on 2 cores the first time); `make test` runs it once per CI run.
"""

import json
import time

import pytest

from unlearnkit.data.render import render
from unlearnkit.models import loader
from unlearnkit.models.engine import generate

pytestmark = pytest.mark.slow


def test_default_model_converts_once_and_answers(tmp_path, monkeypatch):
    monkeypatch.setenv("UNLEARNKIT_CACHE", str(tmp_path))
    model, tok = loader.load_model()
    folder = loader.default_model_dir()
    marker = json.loads((folder / "unlearnkit.json").read_text())
    assert marker["source"].endswith(".gguf") and len(marker["sha256"]) == 64
    assert (folder / "model.safetensors").is_file()
    assert not list(folder.glob("*.bin")) and not list(folder.glob("*.pt"))
    assert tok.pad_token_id != tok.convert_tokens_to_ids("<|im_end|>")
    start = time.time()
    loader.load_model()  # from the cache now
    assert time.time() - start < 30  # generous: the conversion itself takes far longer
    answers = generate(model, tok, [render(tok, "What is the capital of France?"),
                                    render(tok, "What is the capital of Japan?")],
                       max_new_tokens=16)
    assert "Paris" in answers[0]
    assert "Tokyo" in answers[1]
