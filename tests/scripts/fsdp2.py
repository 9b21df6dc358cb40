"""FSDP2 on CPU processes for the tests: accelerate offers FSDP on accelerators only.

:func:`as_fsdp2` switches an Accelerator's state to FSDP2 by hand after it was created under
`accelerate launch` (2 CPU processes, gloo); everything after that (preparing, training,
clipping, gathering the weights) is accelerate's and torch's FSDP2 code.
"""


def as_fsdp2(accelerator) -> None:
    from accelerate import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    plugin = FullyShardedDataParallelPlugin(
        fsdp_version=2, auto_wrap_policy="transformer_based_wrap",
        transformer_cls_names_to_wrap=["LlamaDecoderLayer"], state_dict_type="FULL_STATE_DICT",
        cpu_ram_efficient_loading=False)
    for state in (accelerator.state, PartialState()):
        state.distributed_type = DistributedType.FSDP
    accelerator.state.fsdp_plugin = plugin


def patch_loop() -> None:
    """Every Accelerator the training loop makes is switched to FSDP2."""
    import unlearnkit.training.loop as loop

    make = loop.make_accelerator

    def make_fsdp2(cfg, log_dir=None):
        accelerator = make(cfg, log_dir)
        as_fsdp2(accelerator)
        return accelerator

    loop.make_accelerator = make_fsdp2
