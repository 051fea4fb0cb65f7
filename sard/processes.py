"""The processes a command runs in: accelerate's process state, checked, and the CPU threads each one uses.

Training, synthesis and evaluation run as one process or under ``accelerate launch`` (one process per GPU; on
machines without GPUs, processes joined over gloo with ``ACCELERATE_USE_CPU=true``).
"""

from __future__ import annotations

import os

import torch

from .config import ConfigError


def check_world_size(num_processes: int) -> None:
    """Refuse a launch whose processes accelerate did not join: torchrun (``accelerate launch --multi_gpu``) on a
    machine without GPUs and without ``ACCELERATE_USE_CPU`` starts ``WORLD_SIZE`` processes that would each do
    all the work alone, into the same output folder."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size != num_processes:
        raise ConfigError(
            f"{world_size} processes were launched but accelerate joined {num_processes}: each would do all the work "
            "alone, into the same output folder. Without GPUs, launch with ACCELERATE_USE_CPU=true accelerate launch "
            "--multi_gpu --num_processes N."
        )


def require_one_process(command: str) -> None:
    """Refuse to run ``command`` under a multi-process launch (it runs its steps one after the other)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError(f"run {command} as one process; it runs one step after the other, each with all the cores.")


def process_state():
    """accelerate's ``PartialState`` (this process's place among those ``accelerate launch`` started), checked
    with :func:`check_world_size`."""
    from accelerate import PartialState

    state = PartialState(cpu=os.environ.get("ACCELERATE_USE_CPU", "false").lower() in ("1", "true", "yes"))
    check_world_size(state.num_processes)
    return state


def set_threads(num_threads: int, state) -> None:
    """``num_threads`` torch threads per process; 0: on a CPU, the cores divided among the local processes
    (``accelerate launch`` sets ``OMP_NUM_THREADS=1``), elsewhere torch's default. ``state``: accelerate's
    ``PartialState`` or ``Accelerator`` (its ``device`` and ``num_processes``)."""
    if num_threads:
        torch.set_num_threads(num_threads)
    elif state.device.type == "cpu":
        local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", state.num_processes))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_processes))
