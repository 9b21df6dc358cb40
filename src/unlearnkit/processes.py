"""Which process this is under `accelerate launch` (one process: the only, main one)."""

from __future__ import annotations


def process_state():
    """accelerate's ``PartialState``, made as `accelerate launch` set the processes up.

    A bare ``PartialState()`` assumes accelerators: created first on CPU processes
    (``ACCELERATE_USE_CPU=true``, DDP over gloo) it started the process group but called every
    process the main one of one, so each evaluated and wrote the outputs. The Accelerator reads
    that variable itself; whichever of the two comes first, the state is then the same.
    """
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
