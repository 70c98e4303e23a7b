"""speed.py: which fast paths a device gets. The CPU's bf16 detection is forced both ways, so
both branches are tested on any machine; the start-up line says what was chosen."""
import pytest
import torch

import run
import speed

CPU = torch.device("cpu")


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
                    plain.fused_adamw, plain.compile))
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
