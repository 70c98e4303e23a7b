"""
The training loop (minGPT's Trainer): AdamW with weight decay on weight matrices,
gradient clipping, linear warm-up then cosine decay of the learning rate by tokens
seen, a progress bar and TensorBoard logging.
"""
import math
import os
import random
import signal
import sys
import threading
import time

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

import distributed
from utils import UserError


class TrainerConfig:
    # optimisation
    max_epochs = 10
    batch_size = 64
    learning_rate = 3e-4
    betas = (0.9, 0.95)
    grad_norm_clip = 1.0
    weight_decay = 0.1  # only applied to weight matrices
    # learning-rate schedule, counted in tokens
    lr_decay = False
    warmup_tokens = 375e6
    final_tokens = 260e9
    clamp_progress = True  # past final_tokens the lr stays at its floor; XCS224N's trainer lets it rise again
    # model state dict written (atomically) at the end of every epoch
    ckpt_path = None
    # full training state (model, optimizer, tokens, position, RNG) for --resume: written every
    # save_every epochs and every save_every_minutes of training (0: never), and on Ctrl-C or
    # SIGTERM; read when resume is set
    resume_path = None
    save_every = 0
    save_every_minutes = 0
    resume = False
    # an iterable of (x, y) batches with __len__ used instead of a DataLoader (e.g. corruption.CorruptionBatches)
    train_loader = None
    # data loader
    num_workers = 0
    # TensorBoard SummaryWriter or None
    writer = None
    # the project's own settings
    device = None  # None: wherever the model is
    amp_dtype = None  # e.g. torch.bfloat16 to train under autocast
    fused_adamw = False
    log_every = 1  # steps between loss read-outs (each one syncs with the GPU)
    compile = False  # torch.compile the model for training (eager again if compiling fails)
    desc = "train"

    def __init__(self, **kwargs):
        for k, v in kwargs.items():
            setattr(self, k, v)


def raw(model):
    """The model itself, under torch.compile's or DistributedDataParallel's wrapper."""
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model)


class NonFiniteLossError(UserError):
    pass


def learning_rate_at(config, tokens):
    """Learning rate after `tokens` training tokens: linear warm-up over warmup_tokens,
    then cosine decay that bottoms out at 10% of the base rate by final_tokens (and, with
    clamp_progress off, follows the cosine up again after it, never below 10%)."""
    if not config.lr_decay:
        return config.learning_rate
    if tokens < config.warmup_tokens:
        multiplier = tokens / max(1, config.warmup_tokens)
    else:
        progress = (tokens - config.warmup_tokens) / max(1, config.final_tokens - config.warmup_tokens)
        if config.clamp_progress:
            progress = min(1.0, progress)
        multiplier = max(0.1, 0.5 * (1.0 + math.cos(math.pi * progress)))
    return config.learning_rate * multiplier


def make_optimizer(model, config):
    """AdamW; weight decay on tensors of 2+ dimensions (weights, embeddings), not on biases or LayerNorm."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    extra = {"fused": True} if config.fused_adamw else {}
    return torch.optim.AdamW(groups, lr=config.learning_rate, betas=config.betas, **extra)


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


class Interrupted(KeyboardInterrupt):
    """Training stopped between steps by a signal: SIGINT (Ctrl-C) or SIGTERM (kill, timeout, a scheduler,
    a preempted VM). The exit status is the shell's for that signal, 128 + signum (130, 143)."""

    def __init__(self, message="", signum=signal.SIGINT):
        super().__init__(message)
        self.signum = signum


class DeferredInterrupt:
    """Between start() and stop(), Ctrl-C and SIGTERM take effect at the next check(), between
    training steps, so they never land half-way through an optimizer update. A second Ctrl-C acts at
    once; a second SIGTERM does not (SIGKILL does). Under torchrun, check() stops every rank after the
    same step if any rank got a signal."""

    def start(self):
        self.pending, self.previous = 0, {}
        # only the main thread may set handlers, and a handler someone else installed is left alone:
        # a SIGINT ignored at start-up (nohup, `cmd &`) stays ignored; SIGTERM stops such a run
        if threading.current_thread() is threading.main_thread():
            for signum, default in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, signal.SIG_DFL)):
                if signal.getsignal(signum) is default:
                    self.previous[signum] = signal.signal(signum, self.defer)
        return self

    def defer(self, signum, frame):
        self.pending = self.pending or signum
        # SIGTERM often comes twice (`timeout` or a scheduler signals torchrun, which passes it on to
        # ranks that got it too): the second must not kill a run that is writing its checkpoint
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
    """DataLoader workers outlive a SIGTERM sent to the whole process group (`timeout`, a scheduler):
    dying at once, they would abort the checkpoint; the main process ends them when it is done."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class Trainer:
    def __init__(self, model, train_dataset, test_dataset, config):
        self.model = model
        self.train_dataset = train_dataset
        self.test_dataset = test_dataset
        self.config = config
        self.device = torch.device(config.device) if config.device else next(model.parameters()).device
        self.model.to(self.device)
        self.tokens = 0  # training tokens seen, for the learning-rate schedule
        self.step = 0

    def loader(self, dataset, shuffle):
        cfg = self.config
        sampler = None
        if shuffle and distributed.active():
            # each rank its own share of every epoch, in an order all ranks agree on (seed + epoch)
            sampler = DistributedSampler(dataset, shuffle=True, seed=torch.initial_seed() % 2 ** 62)
        return DataLoader(dataset, batch_size=cfg.batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
                          num_workers=cfg.num_workers, pin_memory=self.device.type == "cuda",
                          persistent_workers=cfg.num_workers > 0, worker_init_fn=ignore_sigterm)

    def wrap(self, model):
        """The model as trained: under DistributedDataParallel in a distributed run, compiled with
        config.compile. self.eager keeps the uncompiled one to fall back on."""
        if distributed.active():
            # the copies start equal (DDP broadcasts rank 0's weights) and backward averages their gradients
            model = DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda"
                                            else None)
        self.eager = model
        if self.config.compile:
            try:
                model = torch.compile(model)
            except Exception as e:  # noqa: BLE001 - e.g. a platform torch.compile does not support
                print(f"torch.compile unavailable ({type(e).__name__}: {str(e)[:200]}); training the eager model",
                      flush=True)
        return model

    def forward_backward(self, x, y):
        """The batch's loss, with its gradients in .grad. A compiled model compiles on its first
        calls (and on a new batch shape); if that fails (no C++ compiler, an unsupported op),
        training goes on with the eager model, from this same batch."""
        try:
            with self.autocast():
                _, loss = self.train_model(x, y)
            self.train_model.zero_grad(set_to_none=True)
            loss.backward()
            return loss
        except Exception as e:  # noqa: BLE001 - any failure of the compiled model means "run it eagerly"
            if self.train_model is self.eager:
                raise
            print(f"torch.compile failed ({type(e).__name__}: {str(e)[:300]}); training the eager model",
                  flush=True)
            self.train_model = self.eager
            return self.forward_backward(x, y)

    def autocast(self):
        dtype = self.config.amp_dtype
        return torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None)

    def run_test(self, loader):
        self.model.eval()
        losses = []
        with torch.no_grad(), self.autocast():
            for x, y in loader:
                x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
                losses.append(self.model(x, y)[1].item())
        self.model.train()
        return sum(losses) / max(1, len(losses))

    def train(self):
        model, cfg = self.model, self.config
        optimizer = make_optimizer(model, cfg)
        train_loader = cfg.train_loader or self.loader(self.train_dataset, shuffle=True)
        distributed.diverge_rngs()  # after the sampler's seed, which must be the same on every rank
        self.train_model = model = self.wrap(model)
        test_loader = self.loader(self.test_dataset, shuffle=False) if self.test_dataset is not None else None
        n_batches = len(train_loader)
        self.train_loader = train_loader
        self.epoch, self.iteration = 0, 0  # where training stands: batches done in this epoch
        self.epoch_start, self.resumed = None, None  # see epoch_batches
        if cfg.resume and cfg.resume_path and os.path.exists(cfg.resume_path):
            self.load_training_state(optimizer)
        bar = tqdm(total=cfg.max_epochs * n_batches, initial=self.epoch * n_batches + self.iteration, desc=cfg.desc,
                   dynamic_ncols=True, mininterval=0.5 if sys.stderr.isatty() else 30,
                   disable=not distributed.is_main())
        model.train()
        self.saved_at = time.monotonic()  # of the last resumable checkpoint, for save_every_minutes
        interrupt = DeferredInterrupt().start()
        try:
            while self.epoch < cfg.max_epochs:
                if isinstance(getattr(train_loader, "sampler", None), DistributedSampler):
                    train_loader.sampler.set_epoch(self.epoch)  # a new order every epoch
                # after a resume mid-epoch, only the batches that epoch still owed are run
                for it, (x, y) in enumerate(self.epoch_batches(), start=self.iteration):
                    if it >= n_batches:
                        break
                    x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
                    # the course counts every target position, PAD included, on every rank (the same batch sizes)
                    tokens = self.tokens + y.numel() * distributed.world_size()
                    lr = learning_rate_at(cfg, tokens)
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                    loss = self.forward_backward(x, y)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_norm_clip)
                    optimizer.step()
                    self.tokens, self.step, self.iteration = tokens, self.step + 1, it + 1
                    if self.step % cfg.log_every == 0 or it == n_batches - 1:
                        self.log(loss.item(), lr, self.epoch, it, bar)
                    bar.update(1)
                    # an epoch can take minutes (a CPU, the full corpus): a crash then loses at most these
                    if cfg.save_every_minutes and time.monotonic() - self.saved_at >= 60 * cfg.save_every_minutes:
                        self.checkpoint(optimizer)
                    interrupt.check()
                self.epoch, self.iteration = self.epoch + 1, 0
                if test_loader is not None and distributed.is_main():
                    test_loss = self.run_test(test_loader)
                    bar.write(f"epoch {self.epoch}: test loss {test_loss:.5f}")
                    if cfg.writer is not None:
                        cfg.writer.add_scalar("test/loss", test_loss, self.step)
                if cfg.ckpt_path is not None and distributed.is_main():
                    save_state_dict(raw(model).state_dict(), cfg.ckpt_path)
                if cfg.save_every and self.epoch % cfg.save_every == 0:
                    self.checkpoint(optimizer)
                interrupt.check()
        except KeyboardInterrupt:
            if cfg.resume_path and distributed.is_main():
                self.save_training_state(optimizer)
                bar.write(f"interrupted at epoch {self.epoch + 1}, iteration {self.iteration}: training state "
                          f"saved to {cfg.resume_path}; run the same command with --resume to continue")
            raise
        finally:
            interrupt.stop()
            bar.close()

    def data_state(self):
        """What decides the coming batches: torch's RNG (DataLoader shuffling) and the loader's own stream."""
        loader = self.train_loader
        return {"torch": torch.get_rng_state(),
                "loader": loader.state_dict() if hasattr(loader, "state_dict") else None}

    def set_data_state(self, state):
        torch.set_rng_state(state["torch"].cpu())
        if state["loader"] is not None:
            self.train_loader.load_state_dict(state["loader"])

    def epoch_batches(self):
        """Iterator over the batches the current epoch still owes. Resumed part way through an epoch,
        it draws the epoch's order again from the random state the epoch started with, skips the
        batches already trained on, then puts every generator back where the interruption left it:
        the run goes on as if it had never stopped (same batches, same learning rates)."""
        resumed, self.resumed = self.resumed, None
        if not (resumed and self.iteration and resumed.get("epoch_start")):
            self.epoch_start = self.data_state()
            return iter(self.train_loader)
        self.epoch_start = resumed["epoch_start"]
        self.set_data_state(self.epoch_start)
        batches = iter(self.train_loader)
        for _ in range(self.iteration):
            next(batches)
        set_rng_state(resumed["rng"])
        return batches

    def checkpoint(self, optimizer):
        """The resumable training state, written by rank 0 alone; restarts the save_every_minutes clock."""
        if self.config.resume_path and distributed.is_main():
            self.save_training_state(optimizer)
        self.saved_at = time.monotonic()

    def save_training_state(self, optimizer):
        try:
            self.write_training_state(optimizer)
        except OSError as e:
            raise UserError(f"cannot write the training checkpoint {self.config.resume_path}: "
                            f"{e.strerror or e}") from None

    def write_training_state(self, optimizer):
        save_state_dict({"model": raw(self.model).state_dict(), "optimizer": optimizer.state_dict(),
                         "tokens": self.tokens, "step": self.step, "epoch": self.epoch,
                         "iteration": self.iteration, "rng": rng_state(),
                         # the epoch's starting state only matters part way through it
                         "epoch_start": self.epoch_start if self.iteration else None,
                         "loader": self.data_state()["loader"]}, self.config.resume_path)

    def load_training_state(self, optimizer):
        path = self.config.resume_path
        try:
            # our own file, holding Python and NumPy RNG states: not loadable with weights_only
            state = torch.load(path, map_location=self.device, weights_only=False)
            raw(self.model).load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
        except Exception as e:  # noqa: BLE001 - truncated, not a checkpoint at all, or another model's
            why = " ".join(f"{type(e).__name__}: {e}".split())[:200]  # load_state_dict's message has many lines
            raise UserError(f"cannot resume from {path} ({why}): the file is cut short, or not a training "
                            f"checkpoint of this model; run without --resume to start from the beginning") from None
        self.tokens, self.step = state["tokens"], state["step"]
        self.epoch, self.iteration = state["epoch"], state["iteration"]
        set_rng_state(state["rng"])
        if state.get("loader") is not None:
            self.train_loader.load_state_dict(state["loader"])
        self.resumed = {"rng": state["rng"], "epoch_start": state.get("epoch_start")}  # for epoch_batches
        print(f"resuming from {self.config.resume_path}: epoch {self.epoch + 1}, iteration {self.iteration}, "
              f"{self.tokens:,} tokens seen", flush=True)

    def log(self, loss, lr, epoch, it, bar):
        if not math.isfinite(loss):
            raise NonFiniteLossError(f"training loss became {loss} at step {self.step} (epoch {epoch + 1}, "
                                     f"iteration {it}); stopping without writing params. Try a lower learning rate.")
        bar.set_postfix_str(f"epoch {epoch + 1} iter {it}: loss {loss:.5f} lr {lr:.4e}", refresh=False)
        if self.config.writer is not None:
            self.config.writer.add_scalar("train/loss", loss, self.step)
            self.config.writer.add_scalar("train/lr", lr, self.step)

