import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def tok():
    from unlearnkit.models.tiny import tiny_tokenizer

    return tiny_tokenizer()


@pytest.fixture()
def tiny(tok):
    from unlearnkit.models.tiny import tiny_model

    return tiny_model(len(tok))


@pytest.fixture()
def cache_dir(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv("UNLEARNKIT_CACHE", str(path))
    return path
