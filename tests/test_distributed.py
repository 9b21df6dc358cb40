"""Two CPU processes (DDP over gloo, through `accelerate launch`) match one process."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from unlearnkit.models.tiny import tiny_model, tiny_tokenizer

SCRIPT = Path(__file__).parent / "scripts" / "ddp_train.py"


def run(cmd, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]


def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    launcher = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    assert launcher, "accelerate's launcher is installed with the package"
    run([sys.executable, str(SCRIPT), str(tmp_path / "one.safetensors")], tmp_path)
    # accelerate's multi-process launcher (torchrun underneath); ACCELERATE_USE_CPU selects
    # DDP over gloo on CPUs instead of NCCL on GPUs
    run([launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29533",
         str(SCRIPT), str(tmp_path / "two.safetensors")], tmp_path)
    one, two = load_file(tmp_path / "one.safetensors"), load_file(tmp_path / "two.safetensors")
    with safe_open(tmp_path / "two.safetensors", "pt") as fh:
        assert fh.metadata()["processes"] == "2"  # really sharded across two processes
    assert one.keys() == two.keys()
    for key in one:
        torch.testing.assert_close(one[key], two[key], atol=1e-5, rtol=1e-4)
    # the weights moved: this is not a comparison of two untrained models
    start = dict(tiny_model(len(tiny_tokenizer()), seed=0).named_parameters())
    assert any(not torch.allclose(start[k], one[k]) for k in one)
