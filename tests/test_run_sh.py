"""
run.sh: its help lists every run of the handouts (src/runs.py), `--synthetic all` completes on a tiny corpus
and is idempotent, and a target without real data fails with a clear error; PYTHON (an interpreter
used as it is) and OUT_DIR are honoured; each course (cs224n, xcs224n, xcs224n-2025) runs its own targets,
and `compile` and a backend reach the training runs' command lines.

Everything runs in tmp_path (SYNTHETIC_DIR, RESULTS_DIR, DATA_DIR) with a tiny model.
"""
import json
import os
import subprocess
import sys

from make_synthetic_corpus import make_corpus
from model import VARIANTS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_SH = os.path.join(ROOT, "run.sh")
VARIANTS = ("vanilla", "rope", "perceiver", "synthesizer")
TARGETS = ["london_baseline", "vanilla_finetune_without_pretrain", "vanilla_eval_dev_without_pretrain",
           "vanilla_eval_test_without_pretrain"] + [
    f"{v}_{step}" for v in VARIANTS
    for step in ("pretrain", "finetune_with_pretrain", "eval_dev_with_pretrain", "eval_test_with_pretrain")]
OUTPUTS = ["london_baseline_accuracy.txt", "vanilla.model.params", "vanilla.nopretrain.dev.predictions",
           "vanilla.nopretrain.test.predictions"] + [
    f"{v}.{suffix}" for v in VARIANTS
    for suffix in ("pretrain.params", "finetune.params", "pretrain.dev.predictions", "pretrain.test.predictions")]
TINY = ("--n_layer 2 --n_head 2 --n_embd 32 --dropout 0 --pretrain_epochs 1 --finetune_epochs 1 "
        "--no_tensorboard --device cpu")


def run_sh(*args, env=None, timeout=300):
    full_env = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.run([RUN_SH, *args], capture_output=True, text=True, env=full_env, timeout=timeout)


def tiny_env(tmp_path):
    make_corpus(str(tmp_path / "synthetic"), n_people=40, seed=0)
    return {"SYNTHETIC_DIR": str(tmp_path / "synthetic"), "RESULTS_DIR": str(tmp_path / "results"),
            "RUN_ARGS": TINY}


def test_help_lists_every_run():
    result = run_sh("help")
    assert result.returncode == 0, result.stderr
    listed = {line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ") and line.split()}
    for target in TARGETS + ["all"]:
        assert target in listed, f"{target} missing from ./run.sh help"
    # the `->` column is the handout file each target writes, one target per file
    written = {line.split()[0]: os.path.basename(line.split("->")[1].strip())
               for line in result.stdout.splitlines() if "->" in line}
    assert sorted(written[t] for t in TARGETS) == sorted(OUTPUTS)
    assert written["rope_finetune_with_pretrain"] == "rope.finetune.params"
    assert written["vanilla_eval_test_without_pretrain"] == "vanilla.nopretrain.test.predictions"
    assert "report" in result.stdout


def test_target_without_real_data_is_a_clear_error(tmp_path):
    empty = tmp_path / "no_data"
    empty.mkdir()
    result = run_sh("vanilla_pretrain", env={"DATA_DIR": str(empty), "RESULTS_DIR": str(tmp_path / "results")})
    assert result.returncode != 0
    assert "wiki.txt not found" in result.stderr
    assert "--synthetic" in result.stderr  # says what to do instead
    assert not (tmp_path / "results" / "logs").exists()  # nothing ran


def test_unknown_target_is_an_error(tmp_path):
    result = run_sh("--synthetic", "no_such_target", env=tiny_env(tmp_path))
    assert result.returncode == 2
    assert "unknown target" in result.stderr


def interpreter(tmp_path, *flags, dry=False):
    """A PYTHON for run.sh: this test's interpreter (with flags), logging each call to tmp_path/calls;
    dry: src/run.py calls are only logged (so a test sees the command lines run.sh builds)."""
    wrapper = tmp_path / "python"
    skip = 'case "$1" in src/run.py) exit 0 ;; esac\n' if dry else ""
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> "{tmp_path / "calls"}"\n{skip}'
                       f'exec "{sys.executable}" {" ".join(flags)} "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


def test_python_runs_targets_with_that_interpreter(tmp_path):
    env = dict(tiny_env(tmp_path), PYTHON=interpreter(tmp_path))
    result = run_sh("--synthetic", "london_baseline", env=env)
    assert result.returncode == 0, result.stderr
    assert "setting up .venv" not in result.stdout + result.stderr
    assert "src/london_baseline.py" in (tmp_path / "calls").read_text()  # the run went through PYTHON
    assert (tmp_path / "results" / "synthetic" / "london_baseline_accuracy.txt").is_file()


def test_python_without_the_packages_names_them_and_installs_nothing(tmp_path):
    env = dict(tiny_env(tmp_path), PYTHON=interpreter(tmp_path, "-S"))  # -S: no site-packages, so no torch
    result = run_sh("--synthetic", "london_baseline", env=env)
    assert result.returncode == 2
    assert "lacks torch tqdm numpy tensorboard" in result.stderr
    assert "setting up .venv" not in result.stdout
    assert not (tmp_path / "results" / "logs").exists()  # nothing ran
    result = run_sh("test", env=env)
    assert result.returncode == 2 and "matplotlib pytest hypothesis" in result.stderr


def test_out_dir_takes_the_runs_outputs(tmp_path):
    result = run_sh("--synthetic", "london_baseline", env=dict(tiny_env(tmp_path), OUT_DIR=str(tmp_path / "runs")))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "runs" / "london_baseline_accuracy.txt").is_file()
    assert not (tmp_path / "results" / "synthetic" / "london_baseline_accuracy.txt").exists()


def test_synthetic_all_completes_and_is_idempotent(tmp_path):
    env = tiny_env(tmp_path)
    first = run_sh("--synthetic", "all", env=env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    out = tmp_path / "results" / "synthetic"
    for name in OUTPUTS:
        assert (out / name).is_file(), f"{name} not written"
    for target in TARGETS:
        assert (tmp_path / "results" / "logs" / f"{target}.log").is_file()
    assert "Correct:" in (tmp_path / "results" / "logs" / "rope_eval_dev_with_pretrain.log").read_text()
    assert "no targets provided" in (tmp_path / "results" / "logs" / "rope_eval_test_with_pretrain.log").read_text()
    # one prediction per question
    dev_questions = (tmp_path / "synthetic" / "birth_dev.tsv").read_text().splitlines()
    assert len((out / "perceiver.pretrain.dev.predictions").read_text().splitlines()) == len(dev_questions)

    record = json.loads((tmp_path / "results" / "logs" / "rope_pretrain.json").read_text())
    assert record["exit_status"] == 0 and record["output"] == str(out / "rope.pretrain.params")

    mtimes = {name: os.stat(out / name).st_mtime_ns for name in OUTPUTS}
    second = run_sh("--synthetic", "all", env=env, timeout=60)
    assert second.returncode == 0, second.stderr
    assert "+ " not in second.stdout and "Nothing to be done" in second.stdout  # make ran nothing
    assert {name: os.stat(out / name).st_mtime_ns for name in OUTPUTS} == mtimes
    # a newer input makes its runs, and only those, run again
    os.utime(out / "rope.pretrain.params")
    third = run_sh("--synthetic", "all", env=env)
    assert third.returncode == 0, third.stderr
    assert [line.split()[3:5] for line in third.stdout.splitlines() if line.startswith("+ ")] == [
        ["finetune", "rope"], ["evaluate", "rope"], ["evaluate", "rope"]]


def test_demo_passes_options_to_run_py(tmp_path):
    """`./run.sh demo VARIANT OPTIONS`: the options reach every src/run.py call and name the output
    directory; a switch that does not apply to the variant stops the demo with run.py's error."""
    env = tiny_env(tmp_path)
    result = run_sh("demo", "rope", "--position_embedding", "sinusoidal", env=env, timeout=120)
    assert result.returncode != 0
    assert "error: position_embedding sinusoidal does not apply to rope" in result.stdout + result.stderr
    assert (tmp_path / "results" / "demo-rope-position_embedding-sinusoidal" / "baseline_accuracy.txt").is_file()
    assert "Demo results" not in result.stdout


def test_demo_augmentation_writes_the_side_by_side_table(tmp_path):
    """`./run.sh demo-augmentation`: a demo at 1 wiki line per person and one at 3, on corpora the
    demo makes itself (regenerated when stale), then the table, JSON and PNG of both."""
    env = {"SYNTHETIC_DIR": str(tmp_path / "synthetic"), "RESULTS_DIR": str(tmp_path / "results"),
           "DEMO_PEOPLE": "20", "DEMO_PRETRAIN_EPOCHS": "1", "DEMO_FINETUNE_EPOCHS": "1", "DEMO_SCRATCH_EPOCHS": "1"}
    result = run_sh("demo-augmentation", env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = tmp_path / "results" / "demo-augmentation"
    rows = json.loads((out / "augmentation.json").read_text())
    assert [r["bios_per_person"] for r in rows] == [1, 3]
    for row, bios in zip(rows, (1, 3)):
        corpus = tmp_path / "synthetic" / f"people20-bios{bios}-seed0"
        assert len((corpus / "wiki.txt").read_text().splitlines()) == 20 * bios
        assert row["dev_questions"] == len((corpus / "birth_dev.tsv").read_text().splitlines())
        assert 0 <= row["pretrained"] <= 100 and row["own line"] is not None
    # the same number of pretraining examples: 3 epochs of 20 lines against 1 epoch of 60
    assert "--pretrain_epochs 3" in (out / "bios1" / "logs" / "pretrain.log").read_text()
    assert "--pretrain_epochs 1" in (out / "bios3" / "logs" / "pretrain.log").read_text()
    assert (out / "augmentation.png").is_file() and "| 3 |" in (out / "augmentation.md").read_text()
    assert result.stdout.count("Demo results") == 2


def test_demo_variants_tables_every_variants_demo(tmp_path):
    """`./run.sh demo-variants`: the demo of each variant in turn, then one table, JSON and PNG whose
    rows are those demos' own results."""
    env = {"SYNTHETIC_DIR": str(tmp_path / "synthetic"), "RESULTS_DIR": str(tmp_path / "results"),
           "DEMO_PEOPLE": "20", "DEMO_PRETRAIN_EPOCHS": "1", "DEMO_FINETUNE_EPOCHS": "1", "DEMO_SCRATCH_EPOCHS": "1"}
    result = run_sh("demo-variants", env=env, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("Demo results") == len(VARIANTS)
    out = tmp_path / "results" / "demo-variants"
    rows = json.loads((out / "variants.json").read_text())
    assert [r["variant"] for r in rows] == list(VARIANTS)
    for row in rows:
        demo = tmp_path / "results" / f"demo-{row['variant']}"
        assert row["pretrained"] == json.loads((demo / "pretrain.dev.predictions.json").read_text())["percent"]
        assert row["seconds"] == int((demo / "seconds.txt").read_text())
    assert (out / "variants.png").read_bytes().startswith(b"\x89PNG")
    assert all(f"| {v} |" in (out / "variants.md").read_text() for v in VARIANTS)


# ----------------------------------------------------------------------------- XCS224N

# the XCS handout's names that CS224N spells otherwise (its others are the CS224N handout's)
XCS_SPELLINGS = ["vanilla_finetime_without_pretrain", "synthesizer_finetrain_with_pretrain"]


def test_xcs_help_lists_its_runs_and_outputs_in_src_submission():
    result = run_sh("--course", "xcs224n", "help")
    assert result.returncode == 0, result.stderr
    listing = result.stdout.split("Targets of xcs224n:")[1]
    written = {line.split()[0]: line.split("->")[1].strip() for line in listing.splitlines() if "->" in line}
    assert written["synthesizer_finetune_with_pretrain"] == "src/submission/synthesizer.finetune.params"
    assert written["vanilla_eval_test_without_pretrain"] == "src/submission/vanilla.nopretrain.test.predictions"
    assert "rope_pretrain" not in written and "perceiver_pretrain" not in written
    assert all(name in result.stdout for name in XCS_SPELLINGS)
    assert run_sh("--course", "nope", "help").returncode == 2


def test_handout_spellings_are_targets(tmp_path):
    """The CS224N recipe by default, its commands unchanged; the XCS spellings are known targets."""
    env = tiny_env(tmp_path)
    result = run_sh("--synthetic", "vanilla_finetime_without_pretrain", env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert (tmp_path / "results" / "synthetic" / "vanilla.model.params").is_file()
    log = (tmp_path / "results" / "logs" / "vanilla_finetune_without_pretrain.log").read_text()
    assert "--course" not in log
    # known names: with no data they fail on wiki.txt, not as unknown targets
    empty = tmp_path / "no_data"
    empty.mkdir()
    for target in XCS_SPELLINGS:
        result = run_sh("--course", "xcs224n", target, env={"DATA_DIR": str(empty)})
        assert result.returncode == 1 and "wiki.txt not found" in result.stderr, (target, result.stderr)


def test_xcs_course_runs_pretrain_and_finetune_with_its_recipe(tmp_path):
    env = tiny_env(tmp_path)
    for target in ("synthesizer_pretrain", "synthesizer_finetrain_with_pretrain"):
        result = run_sh("--synthetic", "--course", "xcs224n", target, env=env)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    out = tmp_path / "results" / "synthetic" / "xcs224n"
    assert (out / "synthesizer.pretrain.params").is_file() and (out / "synthesizer.finetune.params").is_file()
    logs = tmp_path / "results" / "logs" / "xcs224n"
    assert "--course xcs224n" in (logs / "synthesizer_pretrain.log").read_text()
    assert "--course xcs224n" in (logs / "synthesizer_finetune_with_pretrain.log").read_text()
    assert not (tmp_path / "results" / "logs" / "synthesizer_pretrain.log").exists()  # CS224N's logs untouched


# the Fall 2025 cohort's targets (XCS224N's RoPE year), in the order of its handout
XCS_2025 = ["vanilla_finetune_without_pretrain", "vanilla_eval_dev_without_pretrain",
            "vanilla_eval_test_without_pretrain", "vanilla_pretrain", "vanilla_finetune_with_pretrain",
            "vanilla_eval_dev_with_pretrain", "vanilla_eval_test_with_pretrain", "rope_pretrain",
            "rope_finetune_with_pretrain", "rope_eval_dev_with_pretrain", "rope_eval_test_with_pretrain"]


def test_xcs_2025_help_lists_its_rope_runs_in_src_submission():
    result = run_sh("--course", "xcs224n-2025", "help")
    assert result.returncode == 0, result.stderr
    listing = result.stdout.split("Targets of xcs224n-2025:")[1]
    written = {line.split()[0]: line.split("->")[1].strip() for line in listing.splitlines() if "->" in line}
    assert list(written) == ["london_baseline"] + XCS_2025
    assert written["rope_finetune_with_pretrain"] == "src/submission/rope.finetune.params"
    assert written["rope_eval_test_with_pretrain"] == "src/submission/rope.pretrain.test.predictions"


def run_py_calls(tmp_path):
    """The src/run.py command lines a dry interpreter logged, as lists of words."""
    return [line.split() for line in (tmp_path / "calls").read_text().splitlines() if line.startswith("src/run.py")]


def test_compile_and_backend_reach_the_training_runs_only(tmp_path):
    """`all compile inductor` for the 2025 cohort: its targets in order, --compile --backend inductor on the
    pretraining and finetuning runs, neither on the evaluations; no-compile (the default) adds nothing."""
    env = dict(tiny_env(tmp_path), PYTHON=interpreter(tmp_path, dry=True))
    result = run_sh("--synthetic", "--course", "xcs224n-2025", "all", "compile", "inductor", env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    calls = run_py_calls(tmp_path)
    evaluate = {"eval_dev", "eval_test"}
    assert [c[1:3] for c in calls] == [["finetune" if "finetune" in t else "evaluate" if any(
        e in t for e in evaluate) else "pretrain", t.split("_")[0]] for t in XCS_2025]
    for call in calls:
        assert call[call.index("--course") + 1] == "xcs224n-2025"
        trains = call[1] != "evaluate"
        assert ("--compile" in call) == trains and (call[call.index("--backend") + 1] == "inductor") == trains \
            if trains else "--backend" not in call
    assert all(os.path.dirname(c[c.index("--writing_params_path") + 1]).endswith("synthetic/xcs224n-2025")
               for c in calls if c[1] != "evaluate")
    (tmp_path / "calls").unlink()
    result = run_sh("--synthetic", "--course", "xcs224n-2025", "rope_pretrain", "no-compile", env=env)
    assert result.returncode == 0, result.stderr
    (call,) = run_py_calls(tmp_path)
    assert "--compile" not in call and "--backend" not in call
    assert run_sh("--synthetic", "rope_pretrain", "fast", env=env).returncode == 2  # not a word it knows


def test_xcs_2025_rope_runs_pretrain_finetune_evaluate(tmp_path):
    """The 2025 cohort's rope chain on the synthetic corpus, with its recipe (--course xcs224n-2025)."""
    env = tiny_env(tmp_path)
    for target in ("rope_pretrain", "rope_finetune_with_pretrain", "rope_eval_dev_with_pretrain"):
        result = run_sh("--synthetic", "--course", "xcs224n-2025", target, env=env)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    out = tmp_path / "results" / "synthetic" / "xcs224n-2025"
    record = json.loads((out / "rope.pretrain.dev.predictions.json").read_text())
    assert record["variant"] == "rope" and record["total"] > 0
    assert json.loads((out / "rope.pretrain.params.json").read_text())["options"]["course"] == "xcs224n-2025"
    assert (tmp_path / "results" / "logs" / "xcs224n-2025" / "rope_pretrain.log").is_file()


def test_bench_writes_every_speed_row_as_pairs_and_a_summary(tmp_path):
    """./run.sh bench at tiny sizes: one JSONL file a row, fast/plain/fast/plain then the summary;
    the trained model's row is skipped, saying why, when there is no demo model."""
    env = {"SYNTHETIC_DIR": str(tmp_path / "synthetic"), "RESULTS_DIR": str(tmp_path / "results"),
           "BENCH_ARGS": "--n_layer 1 --n_head 2 --n_embd 16 --block_size 64 --batch_size 4 --steps 1 --warmup 0 "
                         "--questions 3 --device cpu --threads 1"}
    result = run_sh("bench", env=env)
    assert result.returncode == 0, result.stderr
    assert "./run.sh demo first" in result.stderr
    rows = sorted(os.listdir(tmp_path / "results" / "bench"))
    assert rows == ["eval_random.jsonl", "train_demo_shape.jsonl", "train_recipe.jsonl"]
    for row in rows:
        lines = [json.loads(line) for line in (tmp_path / "results" / "bench" / row).read_text().splitlines()]
        assert [r.get("path") for r in lines[:4]] == ["fast", "plain", "fast", "plain"] and lines[4]["summary"]
        assert lines[0]["n_layer"] == 1 and len(lines[4]["pair_ratios"]) == 2
    assert result.stderr.count("x on the means") == 3
