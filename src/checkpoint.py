"""
Resumable training (for trainer.py): files written whole or not at all, the training checkpoint (model,
optimizer, counters, every random state), and Ctrl-C/SIGTERM deferred to the end of the current step.

Resume is exact, part way through an epoch too: the epoch's batch order is drawn again from the random state
it started with, the batches already trained on are skipped, and every generator is put back where it was.
"""
import os
import random
import signal
import threading

import numpy as np
import torch

import distributed
from utils import UserError


def save_state_dict(state_dict, path):
    """torch.save through a temporary file and a rename: never a truncated file."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        torch.save(state_dict, tmp)
        with open(tmp, "rb+") as f:  # on disk before the rename: a machine that dies keeps the old file
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # a full disk, Ctrl-C: no half file left behind
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def raw(model):
    """The model itself, under torch.compile's or DistributedDataParallel's wrapper."""
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model)


def rng_state():
    """Every random generator training draws from (shuffling, corruption, dropout)."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(rng):
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"].cpu())
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
    distributed.diverge_rngs()  # rank 0's saved streams, made different on each rank again


def data_state(loader):
    """What decides the coming batches: torch's RNG (DataLoader shuffling) and the loader's own stream."""
    return {"torch": torch.get_rng_state(), "loader": loader.state_dict() if hasattr(loader, "state_dict") else None}


def save(trainer):
    """Write trainer's resumable state to its config.resume_path (rank 0 alone)."""
    if not distributed.is_main():
        return
    path, t = trainer.config.resume_path, trainer
    state = {"model": raw(t.model).state_dict(), "optimizer": t.optimizer.state_dict(), "tokens": t.tokens,
             "step": t.step, "epoch": t.epoch, "iteration": t.iteration, "rng": rng_state(),
             "epoch_start": t.epoch_start if t.iteration else None,  # needed part way through an epoch only
             "loader": data_state(t.train_loader)["loader"]}
    try:
        save_state_dict(state, path)
    except OSError as e:
        raise UserError(f"cannot write the training checkpoint {path}: {e.strerror or e}") from None


def load(trainer):
    """Put trainer (model, optimizer, counters, random state) where the checkpoint left it; returns what
    epoch_batches needs to go on part way through the epoch."""
    path = trainer.config.resume_path
    try:
        # our own file, holding Python and NumPy RNG states: not loadable with weights_only
        state = torch.load(path, map_location=trainer.device, weights_only=False)
        raw(trainer.model).load_state_dict(state["model"])
        trainer.optimizer.load_state_dict(state["optimizer"])
    except Exception as e:  # noqa: BLE001 - truncated, not a checkpoint at all, or another model's
        why = " ".join(f"{type(e).__name__}: {e}".split())[:200]  # load_state_dict's message has many lines
        raise UserError(f"cannot resume from {path} ({why}): the file is cut short, or not a training "
                        f"checkpoint of this model; run without --resume to start from the beginning") from None
    trainer.tokens, trainer.step = state["tokens"], state["step"]
    trainer.epoch, trainer.iteration = state["epoch"], state["iteration"]
    set_rng_state(state["rng"])
    if state.get("loader") is not None:
        trainer.train_loader.load_state_dict(state["loader"])
    print(f"resuming from {path}: epoch {trainer.epoch + 1}, iteration {trainer.iteration}, "
          f"{trainer.tokens:,} tokens seen", flush=True)
    return {"rng": state["rng"], "epoch_start": state.get("epoch_start")}


def epoch_batches(trainer, resumed=None):
    """Iterator over the batches the current epoch still owes; records its starting state in trainer.epoch_start."""
    loader = trainer.train_loader
    if not (resumed and trainer.iteration and resumed.get("epoch_start")):
        trainer.epoch_start = data_state(loader)
        return iter(loader)
    trainer.epoch_start = resumed["epoch_start"]
    torch.set_rng_state(trainer.epoch_start["torch"].cpu())
    if trainer.epoch_start["loader"] is not None:
        loader.load_state_dict(trainer.epoch_start["loader"])
    batches = iter(loader)
    for _ in range(trainer.iteration):
        next(batches)
    set_rng_state(resumed["rng"])
    return batches


class Interrupted(KeyboardInterrupt):
    """Training stopped between steps by SIGINT (Ctrl-C) or SIGTERM (kill, timeout, a scheduler)."""

    def __init__(self, message="", signum=signal.SIGINT):
        super().__init__(message)
        self.signum = signum


class DeferredInterrupt:
    """Between start() and stop(), Ctrl-C and SIGTERM take effect at the next check(), between steps, never
    half-way through an optimizer update. A second Ctrl-C acts at once; a second SIGTERM does not. Under
    torchrun, check() stops every rank after the same step if any rank got a signal."""

    def start(self):
        self.pending, self.previous = 0, {}
        # only the main thread may set handlers; one someone else installed (nohup's SIG_IGN) stays
        if threading.current_thread() is threading.main_thread():
            for signum, default in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, signal.SIG_DFL)):
                if signal.getsignal(signum) is default:
                    self.previous[signum] = signal.signal(signum, self.defer)
        return self

    def defer(self, signum, frame):
        self.pending = self.pending or signum
        # SIGTERM often comes twice (torchrun passes on what ranks got too): the second must not kill the save
        if signum == signal.SIGINT:
            signal.signal(signum, self.previous[signum])

    def check(self):
        signum = distributed.agree(self.pending)  # the largest on any rank: all ranks stop together
        if signum:
            self.pending = 0
            raise Interrupted(signum=signum)

    def stop(self):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous = {}


def ignore_sigterm(worker_id):
    """DataLoader workers ignore a SIGTERM sent to the process group: dying at once, they would abort the save."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
