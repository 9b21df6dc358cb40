"""Two CPU processes (DDP or FSDP2 over gloo, through `accelerate launch`) against one."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from unlearnkit.models.tiny import tiny_model, tiny_tokenizer

SCRIPTS = Path(__file__).parent / "scripts"
SCRIPT = SCRIPTS / "ddp_train.py"


def run(cmd, tmp_path, env=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true", **(env or {})}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout


def launch(*target, port):
    """`accelerate launch` of ``target`` (a script and its arguments, or ``-m MODULE ...``) on
    2 CPU processes."""
    launcher = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    assert launcher, "accelerate's launcher is installed with the package"
    return [launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
            str(port), *map(str, target)]


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


@pytest.mark.parametrize(("mode", "reference", "port"), [("sam", "", 29543),
                                                      ("fsam", "sam", 29547)])
def test_sharpness_aware_steps_under_two_processes_match_one(tmp_path, mode, reference, port):
    """Each process shifts its weights by the all-reduced gradient, so DDP takes the same SAM
    steps as one process with the whole batch (to 1e-4: AdamW's normalised steps carry the
    reduction's rounding further than plain steps do), and SAM moves the weights ten times
    further from the plain steps' than that. ``fsam``: on the forget term alone
    (optim.sam_scope: forget), with a micro-batch whose forget rows all sit on one process
    (the other's forget term is a constant), every process backpropagates every pass alike,
    and the weights differ from the whole loss's SAM."""
    run([sys.executable, str(SCRIPT), str(tmp_path / "reference.safetensors"),
         *([reference] if reference else [])], tmp_path)
    run([sys.executable, str(SCRIPT), str(tmp_path / "one.safetensors"), mode], tmp_path)
    run(launch(SCRIPT, tmp_path / "two.safetensors", mode, port=port), tmp_path)
    other, one, two = (load_file(tmp_path / f"{name}.safetensors")
                       for name in ("reference", "one", "two"))
    for key in one:
        torch.testing.assert_close(one[key], two[key], atol=1e-4, rtol=1e-4)
    assert max(float((other[k] - one[k]).abs().max()) for k in one) > 1e-3


def test_fsdp2_shards_the_weights_and_saves_them_whole_like_one_process(tmp_path):
    """FSDP2 (accelerate's fsdp_version 2, switched on by hand on CPU processes: see
    scripts/fsdp2.py): each process holds half of each weight, training matches one process
    with the same global batch, ``save_trained`` gathers the whole weights into one Hugging
    Face folder, checkpoints hold whole tensors as one process's do, and a run resumed from
    one ends with the same weights."""
    run([sys.executable, str(SCRIPT), str(tmp_path / "one.safetensors"), "--checkpoints",
         str(tmp_path / "ck-one")], tmp_path)
    run(launch(SCRIPT, tmp_path / "two.json", "fsdp2", "--checkpoints", tmp_path / "ck-two",
               port=29534), tmp_path)
    info = json.loads((tmp_path / "two.json").read_text())
    assert info["processes"] == 2 and info["local_rows"] * 2 == info["rows"]  # really sharded
    assert (info["steps_run"], info["rows_per_process"]) == (4, 2)
    one = load_file(tmp_path / "one.safetensors")
    two = load_file(Path(info["folder"]) / "model.safetensors")
    assert set(two) == set(one)  # every weight, the tied output layer written once
    for key in one:
        torch.testing.assert_close(one[key], two[key], atol=1e-5, rtol=1e-4)
    with safe_open(tmp_path / "one.safetensors", "pt") as fh:
        norms = json.loads(fh.metadata()["grad_norms"])
    assert info["grad_norms"] == pytest.approx(norms, rel=1e-4)
    # the step-2 checkpoint: whole weights and AdamW moments, as one process writes them
    for name in ("model.safetensors", "optimizer.safetensors"):
        a, b = (load_file(tmp_path / ck / "checkpoints" / "step-0000002" / name)
                for ck in ("ck-one", "ck-two"))
        assert a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)
        for key in a:
            torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4)
    # resumed from it (steps 3 and 4 only): the uninterrupted run's weights
    run(launch(SCRIPT, tmp_path / "three.json", "fsdp2", "--checkpoints", tmp_path / "ck-two",
               "--resume", port=29537), tmp_path)
    resumed = json.loads((tmp_path / "three.json").read_text())
    assert resumed["steps_run"] == 2  # really resumed
    three = load_file(Path(resumed["folder"]) / "model.safetensors")
    for key in two:
        torch.testing.assert_close(two[key], three[key], atol=1e-6, rtol=1e-5)
    assert resumed["grad_norms"] == pytest.approx(info["grad_norms"], rel=1e-5)


def test_pushpull_runs_alike_under_ddp_and_fsdp2(tiny_folder, tmp_path):
    """`unlearn run`'s training stage (teacher cache, push, pull, the adversarial prefill
    refreshed through the model every step, saving) under 2 processes. Under DDP it used to
    hang: the processes called the model unequally often (a shared prompt prefix ran as a
    second call on one of them) and DDP broadcast buffers at every call; and the tracker's
    end ended the process group that saving needed. DDP and FSDP2 split the rows alike, so
    they must train alike."""
    out = {}
    for port, mode in ((29535, "ddp"), (29536, "fsdp2")):
        run(launch(SCRIPTS / "unlearn_two.py", tiny_folder, tmp_path / mode, mode, port=port),
            tmp_path, env={"UNLEARNKIT_CACHE": str(tmp_path / f"cache-{mode}")})
        out[mode] = json.loads((tmp_path / mode / "done.json").read_text())
        assert out[mode]["processes"] == 2
    ddp, fsdp2 = ([v for h in out[m]["history"] for v in (h["loss"], h["grad_norm"])]
                  for m in out)
    assert len(ddp) == 6 and fsdp2 == pytest.approx(ddp, rel=1e-4)
    start = load_file(tiny_folder / "model.safetensors")
    a, b = (load_file(Path(out[m]["folder"]) / "model.safetensors") for m in out)
    assert set(a) == set(b) == set(start)
    for key in a:
        moved = float((a[key] - start[key]).abs().max())
        assert moved > 1e-3, key  # lr 1e-3, 3 AdamW steps: every weight moved
        # AdamW's step is about lr whatever the gradient's size, so a gradient that is ~0 in
        # both (an embedding row no item uses) may step either way, and DDP's all-reduce and
        # FSDP2's reduce-scatter sum in different orders: an entry or two of a small matrix
        # (1 of 8192 of a block's down_proj, 3.3e-5 apart, on one machine) may differ
        close = ((a[key] - b[key]).abs() <= 2e-5).float().mean()
        assert close > (0.99 if key == "model.embed_tokens.weight" else 0.999), key


def run_config(tmp_path, tiny_folder):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"""data:
  kind: dataset
  model: {tiny_folder}
  sources:
    - {{format: scenario, options: {{n_people: 6, n_forget: 1, neighbors_per_forget: 1}}}}
unlearn:
  teacher: {{top_k: 4}}
  method: {{top_m: 4}}
  mix: {{forget: 2, retain: 2, neighbor: 2, steps: 3}}
optim: {{lr: 1.0e-3, checkpoint_every: 2}}
max_new_tokens: 4
report: false
output: {tmp_path / "run"}
""")
    return cfg


def test_unlearn_run_under_two_cpu_processes_evaluates_and_writes_once(tiny_folder, tmp_path):
    """The whole `unlearn run` command under `accelerate launch` on CPU processes: the model is
    saved whole and only the main process evaluates. A bare PartialState() made first on CPU
    processes called each of them the main one: both evaluated, and the model folder was
    written without its weights."""
    cfg = run_config(tmp_path, tiny_folder)
    out = run(launch("-m", "unlearnkit.cli", "run", cfg, port=29538), tmp_path,
              env={"UNLEARNKIT_CACHE": str(tmp_path / "cache")})
    assert out.count("accuracy (refusal) per split") == 1  # the main process only
    run_dir = tmp_path / "run"
    saved = load_file(run_dir / "model" / "model.safetensors")
    assert set(saved) == set(load_file(tiny_folder / "model.safetensors"))
    results = json.loads((run_dir / "results.json").read_text())
    assert set(results["results"]) == {"before", "after"}
    assert [h["step"] for h in json.loads((run_dir / "train_log.json").read_text())] == [1, 2, 3]


def test_pushpull_with_the_steer_term_runs_under_ddp(tiny_folder, tmp_path):
    """The steer term runs the forget answers through the wrapped model a second time, up to
    the steered block (a hook stops the rest): under DDP both processes do so every step, and
    the run trains, logs the term and saves."""
    cfg = run_config(tmp_path, tiny_folder)
    run(launch("-m", "unlearnkit.cli", "run", cfg, "--set", "unlearn.method.steer=0.01",
               "--set", "unlearn.method.steer_layer=1", port=29549), tmp_path,
        env={"UNLEARNKIT_CACHE": str(tmp_path / "cache")})
    log = json.loads((tmp_path / "run" / "train_log.json").read_text())
    assert [h["step"] for h in log] == [1, 2, 3] and all(h["steer"] > 0 for h in log)
    saved = load_file(tmp_path / "run" / "model" / "model.safetensors")
    assert set(saved) == set(load_file(tiny_folder / "model.safetensors"))


def test_a_baseline_with_hooks_and_references_runs_under_fsdp2(tiny_folder, tmp_path):
    """RMU through the CLI under FSDP2 (scripts/fsdp2_cli.py): its reference activations are
    cached before training, its forward stops at the steered block (a hook raises), it trains
    a few blocks only, checkpoints and saves. (Under DDP it failed: the block list was looked
    up on the wrapper, which has no config.)"""
    cfg = run_config(tmp_path, tiny_folder)
    out = run(launch(SCRIPTS / "fsdp2_cli.py", "run", cfg, "--set", "method=rmu", "--set",
                     "baseline.layer=1", "--set", "baseline.update_layers=[0,1]", port=29539),
              tmp_path, env={"UNLEARNKIT_CACHE": str(tmp_path / "cache")})
    assert out.count("accuracy (refusal) per split") == 1
    run_dir = tmp_path / "run"
    assert (run_dir / "checkpoints" / "step-0000002" / "model.safetensors").is_file()
    saved = load_file(run_dir / "model" / "model.safetensors")
    start = load_file(tiny_folder / "model.safetensors")
    assert set(saved) == set(start)
    moved = {k for k in saved if not torch.equal(saved[k], start[k])}
    assert moved and all(k.startswith(("model.layers.0.mlp", "model.layers.1.mlp"))
                         for k in moved)  # RMU's default modules: the MLPs of its layers


def test_lora_under_fsdp2_saves_the_adapter_and_merged_model_as_ddp_does(tiny_folder,
                                                                         tmp_path):
    """LoRA push-pull through the CLI under DDP and under FSDP2: the sharded adapter is
    gathered, and the main process saves it and merges it (into the base loaded again) as DDP's
    whole copy does; both give the same adapter and the same merged model."""
    cfg = run_config(tmp_path, tiny_folder)
    saved = {}
    for port, (mode, target) in zip((29540, 29541), (("ddp", ("-m", "unlearnkit.cli")),
                                                     ("fsdp2", (SCRIPTS / "fsdp2_cli.py",))),
                                     strict=True):
        run(launch(*target, "run", cfg, "--set", "lora.rank=4", "--set",
                   f"output={tmp_path / mode}", port=port),
            tmp_path, env={"UNLEARNKIT_CACHE": str(tmp_path / f"cache-{mode}")})
        saved[mode] = {name: load_file(tmp_path / mode / name) for name in (
            "adapter/adapter_model.safetensors", "model/model.safetensors")}
    start = load_file(tiny_folder / "model.safetensors")
    merged = saved["fsdp2"]["model/model.safetensors"]
    assert set(merged) == set(start) and any(not torch.equal(merged[k], start[k])
                                             for k in start)
    for name, ddp in saved["ddp"].items():
        fsdp2 = saved["fsdp2"][name]
        assert set(ddp) == set(fsdp2) and len(ddp) > 0, name
        for key in ddp:
            torch.testing.assert_close(ddp[key], fsdp2[key], atol=1e-5, rtol=1e-4)


def test_processes_stop_early_together(tmp_path):
    """Early stopping is judged on each process; when only one says stop (the main one, here),
    all of them stop at that step (a process that went on would wait for the others'
    gradients forever)."""
    run(launch(SCRIPT, tmp_path / "stop.json", "stop0", port=29542), tmp_path)
    steps = [json.loads((tmp_path / f"stop-{rank}.json").read_text())["steps_run"]
             for rank in (0, 1)]
    assert steps == [2, 2]
