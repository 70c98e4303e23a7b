"""
Data-parallel training across processes (DistributedDataParallel), started by torchrun:

    torchrun --nproc_per_node 8 src/run.py pretrain vanilla wiki.txt --writing_params_path vanilla.pretrain.params

Each process (one per GPU, or per CPU share with --device cpu) builds the same model and trains on its own share
of every batch (--batch_size is per process); DDP averages the gradients, so the copies stay identical. Rank 0
alone prints, shows the progress bar, writes TensorBoard logs and saves. Without torchrun nothing here acts.
"""
import builtins
import os
import random
import sys

import numpy as np
import torch
import torch.distributed as dist

from utils import UserError

flags = None  # the process group of agree(): the default one, or a gloo one beside NCCL


def active():
    """True once init() has joined a process group."""
    return dist.is_available() and dist.is_initialized()


def world_size():
    return dist.get_world_size() if active() else 1


def rank():
    return dist.get_rank() if active() else 0


def is_main():
    """True in the process that logs and saves (the only one without torchrun)."""
    return rank() == 0


def init(device):
    """Join torchrun's process group, if any (NCCL between GPUs, gloo on the CPU); returns this process's device."""
    global flags
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:  # not under torchrun, or with one process
        return device
    if device.type not in ("cuda", "cpu"):
        raise UserError(f"distributed training runs on CUDA or the CPU, not on {device.type}")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend)
    # agree() runs every step; over gloo, on the CPU, it does not wait for the GPU
    flags = dist.new_group(backend="gloo") if backend == "nccl" else None
    if not is_main():
        builtins.print = lambda *args, **kwargs: None  # one copy of every message: rank 0's
    print(f"distributed: {world_size()} processes ({backend})", flush=True)
    return device


def agree(value):
    """The largest of an int over all ranks, e.g. the signal that stops training if any rank got one."""
    if not active():
        return value
    value = torch.tensor(value)
    dist.all_reduce(value, op=dist.ReduceOp.MAX, group=flags)
    return int(value)


def diverge_rngs():
    """Give each rank its own Python, NumPy and torch random streams, derived from the current ones (the same on
    every rank): reproducible, but the ranks do not draw the same dropout masks."""
    if not active():
        return
    seed = int(torch.randint(2 ** 31, ())) + rank()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds the CUDA generators too


def destroy():
    """Leave the process group (after an error: the ranks may not all get here)."""
    if active():
        dist.destroy_process_group()


def exit_when_all_done(status=0):
    """Under torchrun, the last thing a run does: wait for every rank, then end at once with this status.
    Tearing gloo down can abort a rank on a busy CPU, and every file is written by now."""
    if not active():
        return
    dist.barrier()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
