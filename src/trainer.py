"""
The training loop (minGPT's Trainer): AdamW with weight decay on weight matrices, gradient clipping, linear
warm-up then cosine decay of the learning rate by tokens seen, a progress bar and TensorBoard logging.
Resumable checkpoints and signal handling live in checkpoint.py.
"""
import math
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

import checkpoint
import distributed
from utils import UserError


@dataclass
class TrainerConfig:
    """Everything a Trainer is told; a dataclass, so a misspelt option is refused."""
    max_epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 3e-4
    betas: tuple = (0.9, 0.95)
    grad_norm_clip: float = 1.0
    weight_decay: float = 0.1  # only applied to weight matrices
    lr_decay: bool = False  # the schedule below, counted in tokens
    warmup_tokens: float = 375e6
    final_tokens: float = 260e9
    ckpt_path: Optional[str] = None  # the model's state dict after every epoch (with a test_dataset: its best)
    num_workers: int = 0  # data loader workers
    writer: Any = None  # TensorBoard SummaryWriter or None
    # the course's fields above, in its order; the project's below
    clamp_progress: bool = True  # past final_tokens the lr stays at its floor; XCS224N's trainer lets it rise again
    resume_path: Optional[str] = None  # the training state (checkpoint.py), also written on Ctrl-C or SIGTERM
    save_every: int = 0  # epochs between saves of it (0: never)
    save_every_minutes: float = 0  # minutes of training between saves as well (0: never)
    resume: bool = False  # read it back first
    # fast paths (speed.Speed.trainer_options)
    train_loader: Any = None  # batches (x, y) with __len__ instead of a DataLoader (corruption.CorruptionBatches)
    device: Any = None  # None: wherever the model is
    amp_dtype: Optional[torch.dtype] = None  # e.g. torch.bfloat16 to train under autocast
    fused_adamw: bool = False
    log_every: int = 1  # steps between loss read-outs (each one syncs with the GPU)
    compile: "bool | str" = False  # torch.compile the model for training, with this backend if a name
    real_tokens: bool = False  # compute only the real tokens, packed (packing.py)
    desc: str = "train"


class NonFiniteLossError(UserError):
    pass


def learning_rate_at(config, tokens):
    """Learning rate after `tokens` training tokens: linear warm-up over warmup_tokens, then cosine decay to a
    floor of 10% at final_tokens (unclamped, the cosine rises again after it, never below 10%)."""
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
    return torch.optim.AdamW(groups, lr=config.learning_rate, betas=config.betas, fused=config.fused_adamw or None)


def data_loader(dataset, config, device):
    """Shuffled batches of config.batch_size; in a distributed run each rank gets its share of every epoch."""
    sampler = None
    if distributed.active():  # an order all ranks agree on (seed + epoch)
        sampler = DistributedSampler(dataset, shuffle=True, seed=torch.initial_seed() % 2 ** 62)
    return DataLoader(dataset, batch_size=config.batch_size, shuffle=sampler is None, sampler=sampler,
                      num_workers=config.num_workers, pin_memory=device.type == "cuda",
                      persistent_workers=config.num_workers > 0, worker_init_fn=checkpoint.ignore_sigterm)


class Trainer:
    """Trainer(model, train_dataset, test_dataset, config).train(). Given a test_dataset, as in minGPT, its
    mean loss is measured after every epoch and ckpt_path is written only when that loss is the best so far."""

    def __init__(self, model, train_dataset, test_dataset, config):
        if test_dataset is not None and len(test_dataset) == 0:
            raise UserError("the test_dataset is empty: pass None to train without one")
        self.model, self.train_dataset, self.test_dataset, self.config = model, train_dataset, test_dataset, config
        self.device = torch.device(config.device) if config.device else next(model.parameters()).device
        self.model.to(self.device)
        # where training stands: tokens seen (for the schedule), optimizer steps, epoch and batches done in it
        self.tokens = self.step = self.epoch = self.iteration = 0
        self.loss = None  # the last loss read out
        self.test_losses = []  # test_dataset's mean loss after each epoch of this run
        self.optimizer = self.train_loader = self.train_model = self.epoch_start = self.saved_at = None

    def prepare(self):
        """Optimizer, batches and the model as trained; the checkpoint's state when resuming (checkpoint.load)."""
        cfg = self.config
        self.optimizer = make_optimizer(self.model, cfg)
        self.train_loader = cfg.train_loader or data_loader(self.train_dataset, cfg, self.device)
        distributed.diverge_rngs()  # after the sampler's seed, which must be the same on every rank
        self.train_model = self.wrap(self.model)
        # exact for a causal model only: with mask_after_softmax, the padding after a token changes it
        self.real_tokens = cfg.real_tokens and getattr(checkpoint.raw(self.model), "causal", False)
        if cfg.resume and cfg.resume_path and os.path.exists(cfg.resume_path):
            return checkpoint.load(self)
        return None

    def train(self):
        cfg = self.config
        resumed = self.prepare()
        n_batches = len(self.train_loader)
        bar = tqdm(total=cfg.max_epochs * n_batches, initial=self.epoch * n_batches + self.iteration, desc=cfg.desc,
                   dynamic_ncols=True, mininterval=0.5 if sys.stderr.isatty() else 30,
                   disable=not distributed.is_main())
        self.model.train()
        self.saved_at = time.monotonic()
        interrupt = checkpoint.DeferredInterrupt().start()
        try:
            while self.epoch < cfg.max_epochs:
                if isinstance(getattr(self.train_loader, "sampler", None), DistributedSampler):
                    self.train_loader.sampler.set_epoch(self.epoch)  # a new order every epoch
                batches = checkpoint.epoch_batches(self, resumed)  # after a resume: what the epoch still owes
                resumed = None
                for x, y in batches:
                    if self.iteration >= n_batches:
                        break
                    self.train_step(x, y, bar, last=self.iteration == n_batches - 1)
                    # an epoch can take minutes: a crash then loses at most save_every_minutes
                    if cfg.save_every_minutes and time.monotonic() - self.saved_at >= 60 * cfg.save_every_minutes:
                        self.save_checkpoint()
                    interrupt.check()
                self.epoch, self.iteration = self.epoch + 1, 0
                best = self.test_dataset is None or self.test_epoch(bar) <= min(self.test_losses)
                if cfg.ckpt_path is not None and distributed.is_main() and best:
                    checkpoint.save_state_dict(checkpoint.raw(self.model).state_dict(), cfg.ckpt_path)
                if cfg.save_every and self.epoch % cfg.save_every == 0:
                    self.save_checkpoint()
                interrupt.check()
        except KeyboardInterrupt:
            if cfg.resume_path and distributed.is_main():
                checkpoint.save(self)
                bar.write(f"interrupted at epoch {self.epoch + 1}, iteration {self.iteration}: training state "
                          f"saved to {cfg.resume_path}; run the same command with --resume to continue")
            raise
        finally:
            interrupt.stop()
            bar.close()

    def train_step(self, x, y, bar=None, last=False):
        """One optimizer step on the batch (x, y), the learning rate set by the tokens seen (bench.py times it)."""
        cfg = self.config
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        # the course counts every target position, PAD included, on every rank (the same batch sizes)
        tokens = self.tokens + y.numel() * distributed.world_size()
        lr = learning_rate_at(cfg, tokens)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss = self.forward_backward(x, y)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_norm_clip)
        self.optimizer.step()
        self.tokens, self.step, self.iteration = tokens, self.step + 1, self.iteration + 1
        if self.step % cfg.log_every == 0 or last:
            self.log(loss.item(), lr, bar)
        if bar is not None:
            bar.update(1)

    def forward_backward(self, x, y):
        """The batch's loss, with its gradients in .grad. If the compiled model fails (no C++ compiler, an
        unsupported op), training goes on with the eager model, from this same batch."""
        try:
            model = self.train_model
            with self.autocast():
                _, loss = model(x, y, packed=True) if self.real_tokens else model(x, y)
            model.zero_grad(set_to_none=True)
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
        """Under torch.autocast to config.amp_dtype, or as it is (None)."""
        dtype = self.config.amp_dtype
        return torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None)

    @torch.no_grad()
    def test_epoch(self, bar=None):
        """test_dataset's mean loss (over batches, as minGPT), in eval mode; logged as test/loss."""
        cfg, model = self.config, checkpoint.raw(self.model)
        model.eval()
        losses = []
        for x, y in DataLoader(self.test_dataset, batch_size=cfg.batch_size, num_workers=cfg.num_workers):
            with self.autocast():
                losses.append(model(x.to(self.device), y.to(self.device))[1].item())
        model.train()
        self.test_losses.append(sum(losses) / len(losses))
        if bar is not None:
            bar.write(f"epoch {self.epoch}: test loss {self.test_losses[-1]:.5f}")
        if cfg.writer is not None:
            cfg.writer.add_scalar("test/loss", self.test_losses[-1], self.step)
        return self.test_losses[-1]

    def save_checkpoint(self):
        """The resumable training state (rank 0 writes it); restarts the save_every_minutes clock."""
        if self.config.resume_path:
            checkpoint.save(self)
        self.saved_at = time.monotonic()

    def wrap(self, model):
        """The model as trained: under DistributedDataParallel in a distributed run (DDP broadcasts rank 0's
        weights and averages the gradients), compiled with config.compile. self.eager: uncompiled."""
        if distributed.active():
            model = DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda"
                                            else None)
        self.eager = model
        if self.config.compile:
            backend = self.config.compile if isinstance(self.config.compile, str) else "inductor"  # torch's default
            try:
                model = torch.compile(model, backend=backend)
            except Exception as e:  # noqa: BLE001 - e.g. a platform torch.compile does not support
                print(f"torch.compile unavailable ({type(e).__name__}: {str(e)[:200]}); training the eager model",
                      flush=True)
        return model

    def log(self, loss, lr, bar):
        if not math.isfinite(loss):
            raise NonFiniteLossError(f"training loss became {loss} at step {self.step} (epoch {self.epoch + 1}, "
                                     f"iteration {self.iteration - 1}); stopping without writing params. "
                                     f"Try a lower learning rate.")
        self.loss = loss
        if bar is not None:
            bar.set_postfix_str(f"epoch {self.epoch + 1} iter {self.iteration - 1}: loss {loss:.5f} lr {lr:.4e}",
                                refresh=False)
        if self.config.writer is not None:
            self.config.writer.add_scalar("train/loss", loss, self.step)
            self.config.writer.add_scalar("train/lr", lr, self.step)
