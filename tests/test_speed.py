"""speed.py: which fast paths a device gets. The CPU's bf16 detection is forced both ways, so
both branches are tested on any machine; the start-up line says what was chosen."""
import ctypes
import json
import os
import platform
import subprocess
import sys

import pytest
import torch

import run
import speed

CPU = torch.device("cpu")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(params=[True, False], ids=["amx", "no_amx"])
def amx(request, monkeypatch):
    monkeypatch.setattr(speed, "cpu_has_bf16_matmul", lambda: request.param)
    return request.param


def test_cpu_trains_under_bf16_autocast_exactly_where_it_has_bf16_matrix_units(amx):
    fast = speed.resolve(CPU)
    assert fast.amp_dtype == (torch.bfloat16 if amx else None)
    assert ("dtype: bf16 autocast" if amx else "dtype: float32") in fast.describe()
    assert (fast.fused_attention, fast.fused_adamw, fast.batched_decoding, fast.batched_corruption) == (True,) * 4
    assert (fast.tf32, fast.num_workers) == (False, 0)  # CUDA's alone


@pytest.mark.parametrize("flags", [{"plain": True}, {"fp32": True}, {"plain": True, "bf16": True}])
def test_plain_and_fp32_train_in_float32(amx, flags):
    assert speed.resolve(CPU, **flags).amp_dtype is None


def test_bf16_trains_under_bf16_autocast_with_or_without_bf16_matrix_units(amx):
    assert speed.resolve(CPU, bf16=True).amp_dtype == torch.bfloat16


def test_plain_turns_every_feature_off(amx):
    plain = speed.resolve(CPU, plain=True)
    assert not any((plain.fused_attention, plain.batched_decoding, plain.batched_corruption, plain.tf32,
                    plain.fused_adamw, plain.compile, plain.kept_freed_memory))
    assert "fused attention: off" in plain.describe() and "batched KV-cache decoding: off" in plain.describe()


def test_the_detection_asks_the_cpu():
    """cpu_has_bf16_matmul is torch's CPUID test for AMX tiles: it agrees with /proc/cpuinfo here."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read().split()
    except OSError:
        pytest.skip("no /proc/cpuinfo")
    assert speed.cpu_has_bf16_matmul() == ("amx_tile" in flags)


def test_run_py_announces_and_uses_the_choice(amx, capsys):
    args = run.parse_args(["pretrain", "vanilla", "wiki.txt", "--device", "cpu"])
    setup = run.setup_speed(args)
    assert setup.amp_dtype == (torch.bfloat16 if amx else None)
    assert capsys.readouterr().out.startswith(setup.describe())
    assert run.setup_speed(run.parse_args(["pretrain", "vanilla", "wiki.txt", "--device", "cpu",
                                           "--fp32"])).amp_dtype is None
    assert run.setup_speed(run.parse_args(["pretrain", "vanilla", "wiki.txt", "--device", "cpu",
                                           "--bf16"])).amp_dtype == torch.bfloat16


@pytest.mark.parametrize("flags", [["--bf16", "--fp32"], ["--bf16", "--plain"]])
def test_run_py_refuses_bf16_beside_fp32_or_plain(flags, capsys):
    with pytest.raises(SystemExit) as exit:
        run.parse_args(["pretrain", "vanilla", "wiki.txt", *flags])
    assert exit.value.code == 2 and "--bf16" in capsys.readouterr().err


# speed.keep_freed_memory: checked in a fresh process each, as the malloc settings are process-wide
MALLOC_PROBE = """
import ctypes, json, sys
sys.path.insert(0, sys.argv[1])
import torch
import speed

class MallInfo2(ctypes.Structure):  # glibc's struct mallinfo2: ten size_t counters
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]
mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
mallinfo2.restype = MallInfo2
setup = speed.resolve(torch.device("cpu"), plain=sys.argv[2] == "plain")
heap = mallinfo2().arena  # bytes of the heap itself
block = torch.ones(1 << 24)  # 64 MiB
mapped = mallinfo2().hblkhd  # bytes in blocks that malloc mapped for themselves
del block
print(json.dumps({"kept": setup.kept_freed_memory, "mapped": mapped, "heap_growth": mallinfo2().arena - heap,
                  "line": setup.describe()}))
"""


def glibc_has_mallinfo2():
    try:
        ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return False
    return True


@pytest.mark.skipif(platform.system() != "Linux" or not glibc_has_mallinfo2(), reason="glibc's malloc only")
@pytest.mark.parametrize("path", ["fast", "plain"])
def test_the_fast_cpu_path_keeps_freed_memory_in_the_heap_instead_of_unmapping_it(path):
    proc = subprocess.run([sys.executable, "-c", MALLOC_PROBE, os.path.join(ROOT, "src"), path],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    probe = json.loads(proc.stdout)
    if path == "fast":  # the 64 MiB come from the heap, and stay there when freed, for the next allocation
        assert probe["kept"] and "freed memory kept: on" in probe["line"]
        assert probe["mapped"] < 1 << 25 <= probe["heap_growth"]  # half the block at least
    else:  # glibc's default: a block this big is mapped for itself, and unmapped when freed
        assert not probe["kept"] and "freed memory kept: off" in probe["line"]
        assert probe["mapped"] >= 1 << 26 and probe["heap_growth"] < 1 << 25


def test_keep_freed_memory_reports_failure_instead_of_raising(monkeypatch):
    monkeypatch.setattr(speed.platform, "system", lambda: "Darwin")
    assert speed.keep_freed_memory() is False
