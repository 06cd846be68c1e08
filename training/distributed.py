"""Process-group setup shared by single-process runs and launchers (deepspeed, torchrun).

A launcher sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT; a plain `python` or
`streamvln train` run gets single-process defaults with a free port, so the same entry point works
on a CPU laptop (gloo) and under `deepspeed --no_local_rank --num_gpus 2` (nccl).
"""

from __future__ import annotations

import os
import socket

import torch


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_distributed_env() -> None:
    """Fill the env:// rendezvous variables for a single process when no launcher set them."""
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    if "MASTER_PORT" not in os.environ:
        os.environ["MASTER_PORT"] = str(free_port())
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))


def init_distributed() -> None:
    """Initialise torch.distributed through DeepSpeed (gloo/ccl on the CPU, nccl on GPUs), once."""
    import deepspeed
    import torch.distributed as dist

    ensure_distributed_env()
    if not dist.is_initialized() and int(os.environ["WORLD_SIZE"]) == 1:
        # One process: an in-memory store needs no TCP rendezvous, so no other process (a test, an
        # actor's ZMQ socket) can take the port between choosing and binding it. DeepSpeed then
        # adopts this group instead of creating its own.
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    if not dist.is_initialized() or not deepspeed.comm.is_initialized():
        deepspeed.init_distributed(verbose=False)


def rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", 0))


def world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_initialized() else int(os.environ.get("WORLD_SIZE", 1))


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
