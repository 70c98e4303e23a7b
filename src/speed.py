"""
The speed features, decided once for a device: run.py and tools/bench.py both take them from here.

Every feature has a plain fallback (`--plain` turns them all off) and a parity test: fused attention
(scaled_dot_product_attention), fused AdamW, batched KV-cache decoding, batched span corruption on the device,
freed memory kept for reuse on the CPU (glibc), and bf16 autocast where the hardware has bf16 matrix units (CUDA
GPUs that support bf16, CPUs with Intel AMX). Elsewhere bf16 is emulated and slow (--bf16 forces it), so
training stays fp32. Weights, optimizer state and the loss stay fp32 either way.
"""
import ctypes
import platform
from dataclasses import dataclass

import torch

import distributed
from corruption import CorruptionBatches
from dataset import CharCorruptionDataset


def cpu_has_bf16_matmul():
    """Does this CPU have bf16 matrix units? torch asks CPUID for the AMX tiles that oneDNN uses."""
    return torch.cpu._is_amx_tile_supported()


def keep_freed_memory(keep_bytes=1 << 30):
    """Ask glibc's malloc to keep up to keep_bytes of freed memory for the next allocation: by default blocks
    over 32 MiB are unmapped when freed, so each step's large activations are page-faulted in afresh.
    Process-wide; True if glibc took both settings (False elsewhere: macOS, Windows, musl)."""
    if platform.system() != "Linux":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the process already runs on
    except (OSError, AttributeError):
        return False
    return bool(mallopt(-3, keep_bytes)) and bool(mallopt(-1, keep_bytes))  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD


@dataclass(frozen=True)
class Speed:
    device: torch.device
    fused_attention: bool = True
    amp_dtype: torch.dtype = None  # train under torch.autocast to this dtype; None: fp32
    tf32: bool = False  # CUDA matmuls in TF32
    fused_adamw: bool = False
    batched_decoding: bool = True
    batched_corruption: bool = True  # pretraining batches built with tensor ops on the device
    kept_freed_memory: bool = False  # keep_freed_memory() took effect (CPU)
    real_tokens: bool = False  # train on the real tokens alone, padding trimmed and packed away (packing.py)
    compile: "bool | str" = False  # torch.compile for training: False, True, or its backend by name
    num_workers: int = 0

    def device_name(self):
        return torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else self.device.type

    def dtype_name(self):
        return "bf16 autocast" if self.amp_dtype else "float32"

    def describe(self):
        """The start-up line that says what runs how."""
        compiled = f"on ({self.compile})" if isinstance(self.compile, str) else on(self.compile)
        return (f"device: {self.device_name()} | dtype: {self.dtype_name()} | "
                f"fused attention: {on(self.fused_attention)} | TF32: {on(self.tf32)} | "
                f"batched KV-cache decoding: {on(self.batched_decoding)} | "
                f"batched span corruption: {on(self.batched_corruption)} | "
                f"freed memory kept: {on(self.kept_freed_memory)} | real tokens only: {on(self.real_tokens)} | "
                f"torch.compile: {compiled}")

    def trainer_options(self, dataset, batch_size):
        """These fast paths as TrainerConfig fields for batch_size on dataset; for span corruption, batches
        corrupted whole on the training device (each rank of a distributed run builds its share)."""
        batched = self.batched_corruption and isinstance(dataset, CharCorruptionDataset)
        return dict(device=self.device, amp_dtype=self.amp_dtype, fused_adamw=self.fused_adamw,
                    num_workers=self.num_workers, compile=self.compile, real_tokens=self.real_tokens,
                    log_every=10 if self.device.type == "cuda" else 1,  # each read-out syncs with the GPU
                    train_loader=CorruptionBatches(dataset, batch_size, device=self.device, rank=distributed.rank(),
                                                   world_size=distributed.world_size()) if batched else None)


def on(flag):
    return "on" if flag else "off"


def resolve(device, plain=False, fp32=False, bf16=False, compile=False, num_workers=None):
    """The Speed of a device: everything fast unless plain; bf16 autocast where the hardware has bf16 matrix
    units (or bf16: anywhere), unless fp32. Sets torch's TF32 switches on CUDA, malloc's on the CPU."""
    cuda = device.type == "cuda"
    fast = not plain
    autocast = fast and not fp32 and (bf16 or (torch.cuda.is_bf16_supported() if cuda else
                                               device.type == "cpu" and cpu_has_bf16_matmul()))
    if cuda and fast:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    kept = fast and device.type == "cpu" and keep_freed_memory()
    return Speed(device=device, fused_attention=fast, amp_dtype=torch.bfloat16 if autocast else None,
                 tf32=cuda and fast, fused_adamw=fast, batched_decoding=fast, batched_corruption=fast,
                 kept_freed_memory=kept, real_tokens=fast and not compile,  # packing's shapes change every step
                 compile=compile, num_workers=num_workers if num_workers is not None else (4 if cuda else 0))
