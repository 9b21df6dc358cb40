import json
import os
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
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


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run faster on one thread (and do not fight a busy machine for its cores)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_prepared(tok, tmp_path_factory):
    """A :class:`PreparedScenario` of tiny random models: 3 records per person split + 1 probe."""
    from unlearnkit.data.scenario import build_scenario, general_probes
    from unlearnkit.models.tiny import tiny_model
    from unlearnkit.pipeline.scenario_models import PreparedScenario

    people = build_scenario(n_people=6, n_forget=1, neighbors_per_forget=1).records
    records = [r for split in ("forget", "retain", "neighbor")
               for r in [x for x in people if x.split == split][:3]] + general_probes()[:1]
    root = tmp_path_factory.mktemp("scenario")
    models = {"base": "tiny"}
    for seed, variant in enumerate(("injected", "oracle")):
        tiny_model(len(tok), seed=seed).save_pretrained(root / variant, safe_serialization=True)
        tok.save_pretrained(root / variant)
        models[variant] = str(root / variant)
    return PreparedScenario(records=records, models=models, probe_report={})


@pytest.fixture()
def tiny_scenario(tiny_prepared, monkeypatch, cache_dir):
    """`unlearn run` on :func:`tiny_prepared` instead of the built-in scenario."""
    import unlearnkit.pipeline.run as run_mod

    monkeypatch.setattr(run_mod, "prepare_scenario", lambda setup, variants: tiny_prepared)
    return tiny_prepared


@pytest.fixture()
def tiny_folder(tok, tmp_path):
    """A tiny random model saved as a Hugging Face folder (with the tiny tokenizer)."""
    from unlearnkit.models.tiny import save_folder, tiny_model

    return save_folder(tmp_path / "tiny", tiny_model(len(tok)), tok)


@pytest.fixture
def chat_server(monkeypatch):
    """A local OpenAI-style server; yields (base_url, seen requests, settable reply)."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    seen: list[dict] = []
    state = {"status": 200, "content": "[]"}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append({"path": self.path, "auth": self.headers.get("Authorization"),
                         "body": body})
            if 300 <= state["status"] < 400:  # a redirect to state["location"]
                self.send_response(state["status"])
                self.send_header("Location", state["location"])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if state["status"] == 200:
                payload = {"choices": [{"message": {"role": "assistant",
                                                    "content": state["content"]}}]}
            else:
                payload = {"error": f"bad key {self.headers.get('Authorization')}"}
            data = json.dumps(payload).encode()
            self.send_response(state["status"])
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # where a followed redirect would arrive (urllib turns POST to GET)
            seen.append({"path": self.path, "auth": self.headers.get("Authorization"),
                         "body": None})
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1", seen, state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


_HOLD = ("import sys, time\nfrom pathlib import Path\nfrom unlearnkit.fsutil import locked\n"
         "with locked(sys.argv[1], wait=False) as mine:\n    print(mine, flush=True)\n"
         "    time.sleep(float(sys.argv[2]))\n"
         "    if len(sys.argv) > 3:\n        Path(sys.argv[3]).mkdir(parents=True)\n"
         "        (Path(sys.argv[3]) / 'inject.json').write_text('{}')\n")


@pytest.fixture
def lock_holder():
    """``hold(path, seconds, then_write=None)``: a child process that holds the lock on
    ``path`` (:func:`unlearnkit.fsutil.locked`) for ``seconds`` (then optionally writes
    ``then_write``/inject.json, as a finished injection would); returned once it holds it.
    Children still alive at the end are killed."""
    import subprocess
    import sys

    children = []

    def hold(path, seconds, then_write=None):
        args = [sys.executable, "-c", _HOLD, str(path), str(seconds)]
        child = subprocess.Popen(args + ([str(then_write)] if then_write else []),
                                 stdout=subprocess.PIPE, text=True)
        children.append(child)
        assert child.stdout.readline().strip() == "True"
        return child

    yield hold
    for child in children:
        child.kill()
        child.wait()
