"""The presets in configs/accelerate load and resolve in accelerate (nothing is launched)."""

from pathlib import Path

import pytest
import yaml
from accelerate.commands import launch
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.utils import constants

PRESETS = Path(__file__).resolve().parents[1] / "configs" / "accelerate"
EXPECTED = {"ddp.yaml": "MULTI_GPU", "fsdp.yaml": "FSDP", "deepspeed-zero2.yaml": "DEEPSPEED"}
COMMON = {"compute_environment", "distributed_type", "num_processes", "num_machines",
          "machine_rank", "mixed_precision"}


def _launch_dests() -> set[str]:
    return {action.dest for action in launch.launch_command_parser()._actions}


def test_every_preset_is_there_and_documented():
    assert sorted(p.name for p in PRESETS.glob("*.yaml")) == sorted(EXPECTED)
    for name in EXPECTED:
        text = (PRESETS / name).read_text()
        assert "--num_processes" in text and "accelerate launch --config_file" in text, name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_preset_has_the_keys_of_its_distributed_type(name):
    data = yaml.safe_load((PRESETS / name).read_text())
    assert set(data) >= COMMON, COMMON - set(data)
    assert data["distributed_type"] == EXPECTED[name] and data["num_processes"] == -1
    assert data["mixed_precision"] == "bf16"
    if name == "fsdp.yaml":
        fsdp = data["fsdp_config"]
        assert fsdp["fsdp_version"] == 2  # training.loop refuses FSDP1
        assert fsdp["fsdp_reshard_after_forward"] is True
        assert fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
        assert fsdp["fsdp_auto_wrap_policy"] in constants.FSDP_AUTO_WRAP_POLICY
        assert fsdp["fsdp_state_dict_type"] in constants.FSDP_STATE_DICT_TYPE
    if name.startswith("deepspeed"):
        ds = data["deepspeed_config"]
        assert ds["zero_stage"] == int(name[-6])  # deepspeed-zero2.yaml -> 2
        assert ds["deepspeed_multinode_launcher"] in constants.DEEPSPEED_MULTINODE_LAUNCHERS
        assert {ds["offload_optimizer_device"], ds["offload_param_device"]} <= {"none", "cpu",
                                                                                "nvme"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_accelerate_loads_and_resolves_the_preset(name):
    path = str(PRESETS / name)
    cfg = load_config_from_file(path)  # rejects unknown top-level keys
    assert cfg.distributed_type.value == EXPECTED[name]
    # every section key becomes a launch argument (fsdp_config.x -> fsdp_x); a misspelt one
    # would be set silently and ignored, so check them against the launcher's arguments
    dests = _launch_dests()
    for key in [*cfg.fsdp_config, *cfg.deepspeed_config]:
        assert key in dests, f"{name}: {key} is not an accelerate launch argument"
    parser = launch.launch_command_parser()
    args, _, _ = launch._validate_launch_command(
        parser.parse_args(["--config_file", path, "--num_processes", "2", "train.py"]))
    assert args.num_processes == 2 and args.mixed_precision == "bf16"
    assert (args.multi_gpu, args.use_fsdp, args.use_deepspeed) == (
        EXPECTED[name] == "MULTI_GPU", EXPECTED[name] == "FSDP", EXPECTED[name] == "DEEPSPEED")
    # the placeholder forces an explicit --num_processes
    with pytest.raises(ValueError, match="--num_processes"):
        launch._validate_launch_command(parser.parse_args(["--config_file", path, "train.py"]))


def test_fsdp_preset_becomes_the_fsdp_environment():
    from accelerate.utils.launch import prepare_multi_gpu_env

    parser = launch.launch_command_parser()
    args, _, _ = launch._validate_launch_command(parser.parse_args(
        ["--config_file", str(PRESETS / "fsdp.yaml"), "--num_processes", "2", "train.py"]))
    env = prepare_multi_gpu_env(args)
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "2"
    assert env["FSDP_AUTO_WRAP_POLICY"] == "TRANSFORMER_BASED_WRAP"
    assert env["FSDP_STATE_DICT_TYPE"] == "FULL_STATE_DICT"
    assert env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    # the plugin accelerate builds from that environment in each process
    from accelerate.utils import FullyShardedDataParallelPlugin

    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
    assert plugin.cpu_ram_efficient_loading is False
