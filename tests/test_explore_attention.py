"""
Tests for tools/explore_attention.py: the script runs, every construction meets
its target, and two heads are steadier than one in the CS224N experiment.
"""
import os
import re
import subprocess
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)

import explore_attention as ea  # noqa: E402

ERROR_LINE = re.compile(r"max abs error vs target: (\S+)")


def test_script_runs_and_every_construction_meets_its_target():
    proc = subprocess.run([sys.executable, os.path.join("tools", "explore_attention.py")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for label in "abcdef":
        assert f"({label}) " in proc.stdout, f"construction ({label}) not printed"
    errors = [float(x) for x in ERROR_LINE.findall(proc.stdout)]
    assert len(errors) == 6, proc.stdout
    assert all(e <= 0.05 for e in errors), errors
    assert "FAILED" not in proc.stdout


def test_constructions_hit_their_targets():
    cons = ea.run_constructions()
    assert [c.label for c in cons] == list("abcdef")
    for c in cons:
        assert c.error <= ea.TOLERANCE, (c.label, c.error)
        assert torch.allclose(c.weights.sum(-1), torch.ones(c.weights.size(0), dtype=c.weights.dtype))
    assert ea.failures(cons) == []


def test_failure_check_can_fail():
    # with a tolerance below the softmax leak, every construction but the exact one (c) fails
    cons = ea.run_constructions()
    assert ea.failures(cons, tolerance=1e-9) == list("abdef")


def test_constructions_have_the_promised_structure():
    cons = {c.label: c for c in ea.run_constructions()}
    # (b): one query per position, each putting most weight on its own key
    assert torch.equal(cons["b"].weights.argmax(-1), torch.arange(4))
    # (d): v0 and v1 share the weight equally
    w = cons["d"].weights[0]
    assert abs(w[0] - w[1]).item() < 1e-9 and (w[0] + w[1]).item() > 0.99
    # (e): only one key differs from the original ones
    new_k3 = cons["e"].setup["new k3"]
    assert not torch.allclose(new_k3, ea.KEYS[3])
    # (f): the replacement key has unit norm
    assert abs(cons["f"].setup["new k2"].norm().item() - 1.0) < 1e-12


def test_two_heads_spread_less_than_one():
    stats = ea.single_vs_multi_head(n_samples=4000, seed=1)
    single, multi = stats["single"], stats["multi"]
    for key in ("a", "b"):
        assert multi[key][1] < single[key][1]
    # the single head swings nearly all the way between v_a and v_b ...
    assert single["a"][1] > 0.3
    # ... while the two heads' average sits close to (v_a + v_b) / 2
    assert multi["a"][1] < 0.2 and multi["b"][1] < 0.2
    assert abs(multi["b"][0] - 0.5) < 0.05
