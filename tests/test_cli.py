"""End-to-end tests of the command line: src/run.py pretrain -> finetune -> evaluate
on a tiny synthetic corpus, its error handling, and src/london_baseline.py."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
import torch

import run as run_py
from make_synthetic_corpus import make_corpus

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = os.path.join(ROOT, "src", "run.py")
LONDON = os.path.join(ROOT, "src", "london_baseline.py")
TINY = ["--n_layer", "2", "--n_head", "2", "--n_embd", "32", "--dropout", "0", "--pretrain_epochs", "2",
        "--finetune_epochs", "2", "--no_tensorboard", "--device", "cpu"]
CORRECT = re.compile(r"Correct: (\d+) out of (\d+): ([\d.]+)%")
ENV = dict(os.environ, PYTHONIOENCODING="utf-8", OMP_NUM_THREADS="1")


def start(script, *args, cwd):
    return subprocess.Popen([sys.executable, script, *map(str, args)], cwd=cwd, env=ENV, text=True,
                            encoding="utf-8", stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc):
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run(*args, cwd, script=RUN):
    return finish(start(script, *args, cwd=cwd))


# Runs a script as __main__ once per case inside one interpreter, so that the many quick
# bad-input runs share one torch import. What a case leaves on stdout/stderr and its exit
# status are what `python SCRIPT ARGS...` gives: an uncaught exception prints its traceback
# and exits 1, sys.exit("message") prints the message and exits 1.
DRIVER = r"""
import contextlib, io, json, os, runpy, sys, traceback
cases = json.load(sys.stdin)
sys.path.insert(0, os.path.join(cases["root"], "src"))
results = {}
for name, (script, argv, cwd) in cases["cases"].items():
    out, err, code = io.StringIO(), io.StringIO(), 0
    os.chdir(cwd)
    sys.argv = [script, *argv]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            runpy.run_path(script, run_name="__main__")
        except SystemExit as e:
            if e.code is None or isinstance(e.code, int):
                code = e.code or 0
            else:
                print(e.code, file=sys.stderr)
                code = 1
        except BaseException:
            traceback.print_exc()
            code = 1
    results[name] = [code, out.getvalue(), err.getvalue()]
json.dump(results, sys.__stdout__)
"""


def run_in_one_interpreter(cases):
    """{name: (script, args, cwd)} -> {name: CompletedProcess}; see DRIVER."""
    payload = {"root": ROOT, "cases": {name: (script, [str(a) for a in args], str(cwd))
                                       for name, (script, args, cwd) in cases.items()}}
    proc = subprocess.run([sys.executable, "-c", DRIVER], input=json.dumps(payload), capture_output=True,
                          text=True, encoding="utf-8", env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return {name: subprocess.CompletedProcess(cases[name][1], code, out, err)
            for name, (code, out, err) in json.loads(proc.stdout).items()}


def ok(result):
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr
    return result


def lines_of(path):
    with open(path, encoding="utf-8") as f:
        return [line for line in f.read().split("\n") if line.strip()]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def corpus(work):
    return make_corpus(str(work / "data"), n_people=50, seed=0)


@pytest.fixture(scope="module")
def pretrained(work, corpus):
    path = work / "vanilla.pretrain.params"
    result = ok(run("pretrain", "vanilla", corpus["wiki"], "--writing_params_path", path, *TINY, cwd=work))
    return path, result


@pytest.fixture(scope="module")
def finetuned(work, corpus, pretrained):
    path = work / "vanilla.finetune.params"
    result = ok(run("finetune", "vanilla", corpus["wiki"], "--reading_params_path", pretrained[0],
                    "--writing_params_path", path, "--finetune_corpus_path", corpus["train"], *TINY, cwd=work))
    return path, result


def test_pretrain_writes_params(work, pretrained):
    path, result = pretrained
    assert path.is_file()
    state = torch.load(path)
    assert "tok_emb.weight" in state and "pos_emb" in state
    assert str(path) in result.stdout
    assert not [name for name in os.listdir(work) if ".tmp" in name]
    assert not (work / "expt").exists()  # --no_tensorboard


def test_finetune_from_pretrained(pretrained, finetuned):
    path, result = finetuned
    assert path.is_file()
    before, after = torch.load(pretrained[0]), torch.load(path)
    assert set(before) == set(after)
    assert any(not torch.equal(before[k], after[k]) for k in before)  # it trained


@pytest.fixture(scope="module")
def evaluated_dev(work, corpus, finetuned):
    out = work / "vanilla.pretrain.dev.predictions"
    return out, ok(run("evaluate", "vanilla", corpus["wiki"], "--reading_params_path", finetuned[0],
                       "--eval_corpus_path", corpus["dev"], "--outputs_path", out, *TINY, cwd=work))


def test_evaluate_dev(corpus, evaluated_dev):
    out, result = evaluated_dev
    with open(out, encoding="utf-8") as f:
        predictions = f.read().split("\n")
    assert predictions[-1] == ""  # one line per prediction, each ending in a newline
    predictions = predictions[:-1]
    answers = [line.split("\t")[1] for line in lines_of(corpus["dev"])]
    assert len(predictions) == len(answers)
    assert all("\u2047" not in p and "\u25a1" not in p and len(p) <= 32 for p in predictions)
    match = CORRECT.search(result.stdout)
    assert match, result.stdout
    correct, total, percent = int(match.group(1)), int(match.group(2)), float(match.group(3))
    assert total == len(answers)
    assert correct == sum(p == a for p, a in zip(predictions, answers))
    assert percent == pytest.approx(100.0 * correct / total)
    # the same figures as structured data beside the predictions, for the report scripts
    with open(f"{out}.json", encoding="utf-8") as f:
        results = json.load(f)
    assert (results["correct"], results["total"], results["questions"]) == (correct, total, len(answers))
    assert results["percent"] == pytest.approx(percent) and results["predictions"] == str(out)
    assert results["eval_corpus"] == corpus["dev"] and results["seconds"] > 0


def test_evaluate_test_inputs(work, corpus, finetuned):
    out = work / "vanilla.pretrain.test.predictions"
    result = ok(run("evaluate", "vanilla", corpus["wiki"], "--reading_params_path", finetuned[0],
                    "--eval_corpus_path", corpus["test_inputs"], "--outputs_path", out, *TINY, cwd=work))
    assert f"Predictions written to {out}; no targets provided" in result.stdout
    assert not CORRECT.search(result.stdout)
    with open(out, encoding="utf-8") as f:
        text = f.read()
    assert text.endswith("\n") and text.count("\n") == len(lines_of(corpus["test_inputs"]))


def test_evaluate_warns_naming_the_line(work, corpus, finetuned):
    questions = lines_of(corpus["test_inputs"])[:3]
    path = work / "odd_inputs.tsv"
    # blank line 2 counts; line 3 has a character that is not in the vocabulary
    path.write_text(questions[0] + "\n\n" + questions[1].replace("born", "b\u00f6rn") + "\n" + questions[2] + "\n",
                    encoding="utf-8")
    out = work / "odd.predictions"
    result = ok(run("evaluate", "vanilla", corpus["wiki"], "--reading_params_path", finetuned[0],
                    "--eval_corpus_path", path, "--outputs_path", out, *TINY, cwd=work))
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "line 3" in warnings[0] and "\u00f6" in warnings[0]
    assert len(out.read_text(encoding="utf-8").split("\n")) == 3 + 1


@pytest.fixture(scope="module")
def finetuned_from_scratch(work, corpus):
    path = work / "vanilla.model.params"
    ok(run("finetune", "vanilla", corpus["wiki"], "--writing_params_path", path, "--finetune_corpus_path",
           corpus["train"], *TINY, cwd=work))
    return path


def test_finetune_without_pretraining(finetuned_from_scratch):
    state = torch.load(finetuned_from_scratch)
    assert "tok_emb.weight" in state


# -----------------------------------------------------------------------------
# odd but valid input (CRLF, BOM, unknown characters and long questions at evaluation),
# deterministic evaluation

@pytest.fixture(scope="module")
def odd_runs(work, corpus, pretrained, finetuned):
    """Runs of src/run.py on odd but valid input, and a second evaluation of the dev set, in one interpreter."""
    odd = work / "odd"
    odd.mkdir()
    crlf_bom = {}
    for name in ("train", "dev"):
        with open(corpus[name], encoding="utf-8") as f:
            lines = [line for line in f.read().split("\n") if line]
        crlf_bom[name] = odd / f"{name}_crlf_bom.tsv"
        crlf_bom[name].write_bytes(("\ufeff" + "\r\n".join(lines) + "\r\n").encode("utf-8"))
    question = lines[0].split("\t")[0]
    # line 2: longer than the block; line 3: a character the pretraining corpus never had
    unknown = question.replace("born", "b\u00f8rn")
    (odd / "odd_questions.tsv").write_text(f"{question}\n{'Where was ' * 14}{question}\n{unknown}\n",
                                           encoding="utf-8")
    predict = ("evaluate", "vanilla", corpus["wiki"], "--reading_params_path", finetuned[0])
    cases = {
        "again": (*predict, "--eval_corpus_path", corpus["dev"], "--outputs_path", odd / "again.predictions"),
        "crlf_bom_eval": (*predict, "--eval_corpus_path", crlf_bom["dev"], "--outputs_path",
                          odd / "crlf_bom.predictions"),
        "crlf_bom_finetune": ("finetune", "vanilla", corpus["wiki"], "--reading_params_path", pretrained[0],
                              "--finetune_corpus_path", crlf_bom["train"], "--writing_params_path",
                              odd / "crlf_bom.params"),
        "odd_questions": (*predict, "--eval_corpus_path", odd / "odd_questions.tsv", "--outputs_path",
                          odd / "odd_questions.predictions"),
    }
    return odd, run_in_one_interpreter({name: (RUN, [*args, *TINY], odd) for name, args in cases.items()})


def test_evaluate_is_deterministic(evaluated_dev, odd_runs):
    """Two evaluations of the same params (separate processes) give byte-identical predictions."""
    odd, results = odd_runs
    ok(results["again"])
    assert (odd / "again.predictions").read_bytes() == evaluated_dev[0].read_bytes()
    assert CORRECT.search(results["again"].stdout).group(0) == CORRECT.search(evaluated_dev[1].stdout).group(0)


def test_crlf_and_bom_are_read_as_plain_text(evaluated_dev, finetuned, odd_runs):
    odd, results = odd_runs
    ok(results["crlf_bom_eval"])
    assert (odd / "crlf_bom.predictions").read_bytes() == evaluated_dev[0].read_bytes()
    assert CORRECT.search(results["crlf_bom_eval"].stdout).group(0) == \
        CORRECT.search(evaluated_dev[1].stdout).group(0)
    ok(results["crlf_bom_finetune"])
    # the same training data, so the same weights as finetuning on the plain file
    plain, odd_params = torch.load(finetuned[0]), torch.load(odd / "crlf_bom.params")
    assert set(plain) == set(odd_params) and all(torch.equal(plain[k], odd_params[k]) for k in plain)


def test_odd_questions_warn_and_still_get_a_prediction(odd_runs):
    odd, results = odd_runs
    result = ok(results["odd_questions"])
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2, result.stderr
    assert "line 2" in warnings[0] and "longer" in warnings[0]
    assert "line 3" in warnings[1] and "\u00f8" in warnings[1] and "vocabulary" in warnings[1]
    text = (odd / "odd_questions.predictions").read_text(encoding="utf-8")
    assert text.endswith("\n") and text.count("\n") == 3  # one prediction per question, the odd ones too
    assert "Predictions written to" in result.stdout


# -----------------------------------------------------------------------------
# Ctrl-C, SIGTERM and SIGKILL during training: the state is saved, and --resume finishes the run

# Runs src/run.py (argv[4:]) as __main__, pausing after training step argv[2] until the file
# argv[3] + ".go" exists; once paused it writes its pid to argv[3] + its rank (0 without torchrun):
# a signal sent at a known point of training. A script file, so that torchrun can run it too.
PAUSE_AFTER_STEP = r"""
import os, runpy, sys, time
root, step, paused = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sys.path.insert(0, os.path.join(root, "src"))
import trainer
log = trainer.Trainer.log
def log_and_pause(self, *args):
    log(self, *args)
    if self.step == step:
        mine = paused + os.environ.get("RANK", "0")
        with open(mine + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.replace(mine + ".tmp", mine)
        deadline = time.time() + 120  # never outlive a test that failed
        while not os.path.exists(paused + ".go") and time.time() < deadline:
            time.sleep(0.01)
trainer.Trainer.log = log_and_pause
sys.argv = [os.path.join(root, "src", "run.py"), *sys.argv[4:]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def start_paused(args, cwd, step=1, sigint=signal.SIG_DFL, launcher=(sys.executable,), ranks=1, **popen):
    """(process, pids of its ranks, go): src/run.py ARGS started by launcher (torchrun: one process
    per rank), each rank paused after training step `step` until go.touch(). sigint: the SIGINT
    disposition it starts with: SIG_DFL as a shell gives a foreground job (Ctrl-C raises
    KeyboardInterrupt), SIG_IGN as it gives `cmd &` (SIGINT ignored)."""
    script, paused = cwd / "pause_after_step.py", cwd / "paused"
    script.write_text(PAUSE_AFTER_STEP, encoding="utf-8")
    for old in cwd.glob("paused*"):
        old.unlink()
    proc = subprocess.Popen([*launcher, *map(str, (script, ROOT, step, paused, *args))], cwd=cwd, env=ENV, text=True,
                            encoding="utf-8", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, sigint), **popen)
    deadline = time.time() + 120
    while not all((cwd / f"paused{rank}").exists() for rank in range(ranks)):
        assert proc.poll() is None, finish(proc)
        assert time.time() < deadline
        time.sleep(0.02)
    return proc, [int((cwd / f"paused{rank}").read_text()) for rank in range(ranks)], cwd / "paused.go"


def same_weights(path, reference):
    mine, theirs = torch.load(path), torch.load(reference)
    return set(mine) == set(theirs) and all(torch.equal(mine[k], theirs[k]) for k in theirs)


def assert_saved_and_says_how_to_resume(result, signame, ckpt, work):
    """One line of stderr (rank 0's under torchrun) says how to resume, and nothing else comes from our
    code; the checkpoint is there, without a temporary file left beside it."""
    assert os.path.join(ROOT, "src") not in result.stderr, result.stderr  # no traceback through our code
    hint = f"interrupted: {signame}; training state saved to {ckpt}; run the same command with --resume to continue"
    assert [line for line in result.stderr.splitlines() if line.startswith("interrupted")] == [hint]
    assert ckpt.is_file()
    assert [name for name in os.listdir(work) if ".tmp" in name] == []


def test_ctrl_c_saves_training_state_and_resume_completes(work, corpus, pretrained):
    out, ckpt = work / "interrupted.params", work / "interrupted.params.ckpt"
    args = ("pretrain", "vanilla", corpus["wiki"], "--writing_params_path", out, *TINY)
    proc, _, go = start_paused(args, work)
    proc.send_signal(signal.SIGINT)
    go.touch()
    interrupted = finish(proc)
    assert interrupted.returncode == 130, interrupted
    assert_saved_and_says_how_to_resume(interrupted, "SIGINT", ckpt, work)
    assert interrupted.stderr.strip().splitlines()[-1].startswith("interrupted")
    assert not out.exists()

    resumed = ok(run(*args, "--resume", cwd=work))
    assert "resuming from" in resumed.stdout
    assert out.is_file() and not ckpt.exists()
    assert same_weights(out, pretrained[0])  # exactly where the uninterrupted run of the same command ends


def test_sigterm_stops_a_background_run_and_resume_completes(work, corpus, pretrained):
    """`cmd &` ignores SIGINT, so `kill -INT` does nothing; SIGTERM to the whole process group (as
    `timeout` and schedulers send it, DataLoader workers included) stops it like Ctrl-C: exit 143."""
    out, ckpt, reference = work / "terminated.params", work / "terminated.params.ckpt", work / "worker.params"
    command = ("finetune", "vanilla", corpus["wiki"], "--reading_params_path", pretrained[0],
               "--finetune_corpus_path", corpus["train"], "--num_workers", 1, *TINY)
    args = (*command, "--writing_params_path", out)
    # uninterrupted; with a worker the shuffles differ from those of a run without one (persistent
    # workers draw no new seed in the second epoch)
    ok(run(*command, "--writing_params_path", reference, cwd=work))
    proc, _, go = start_paused(args, work, sigint=signal.SIG_IGN, start_new_session=True)
    # signals are handled in the order of their numbers: a SIGINT that was not ignored would win (exit 130)
    os.killpg(proc.pid, signal.SIGINT)
    os.killpg(proc.pid, signal.SIGTERM)
    go.touch()
    terminated = finish(proc)
    assert terminated.returncode == 143, terminated
    assert_saved_and_says_how_to_resume(terminated, "SIGTERM", ckpt, work)
    assert terminated.stderr.strip().splitlines()[-1].startswith("interrupted")
    assert torch.load(ckpt, weights_only=False)["step"] == 1  # the step under way when the signal came

    ok(run(*args, "--resume", cwd=work))
    assert same_weights(out, reference)


def test_sigkill_loses_only_the_steps_since_the_timed_checkpoint(work, corpus, pretrained):
    out, ckpt = work / "killed.params", work / "killed.params.ckpt"
    args = ("pretrain", "vanilla", corpus["wiki"], "--writing_params_path", out, *TINY,
            "--save_every_minutes", 1e-6)  # after every step
    proc, _, _ = start_paused(args, work, step=2)
    proc.kill()
    assert finish(proc).returncode == -signal.SIGKILL
    assert torch.load(ckpt, weights_only=False)["step"] == 1  # written by the clock, not by a handler

    resumed = ok(run(*args, "--resume", cwd=work))
    assert "resuming from" in resumed.stdout and out.is_file() and not ckpt.exists()
    assert same_weights(out, pretrained[0])


# -----------------------------------------------------------------------------
# bad input: one line "error: ..." on stderr, non-zero exit, no traceback

@pytest.fixture(scope="module")
def bad_runs(work, corpus, pretrained):
    """Every bad-input run of src/run.py, in one interpreter (each is mostly start-up)."""
    bad = work / "bad"
    bad.mkdir()
    (bad / "no_tab.tsv").write_text("Where was A born?\tParis\nWhere was B born? Paris\n", encoding="utf-8")
    with open(corpus["wiki"], encoding="utf-8") as f:
        wiki = f.read().split("\n")
    (bad / "pad.txt").write_text("\n".join(wiki[:3] + [wiki[3] + " \u25a1"] + wiki[4:]), encoding="utf-8")
    (bad / "mask.txt").write_text("\n".join(wiki[:1] + ["\u2047 " + wiki[1]] + wiki[2:]), encoding="utf-8")
    with open(corpus["dev"], encoding="utf-8") as f:
        dev = [line for line in f.read().split("\n") if line]
    question = dev[0].split("\t")[0]
    (bad / "empty.txt").write_text("\n\n", encoding="utf-8")
    (bad / "empty.tsv").write_text("", encoding="utf-8")
    (bad / "blank.tsv").write_text("\n  \n", encoding="utf-8")
    (bad / "extra.tsv").write_text(f"{dev[0]}\n{dev[1]}\tRome\n", encoding="utf-8")
    (bad / "half_answers.tsv").write_text(f"{dev[0]}\n\n{question}\n", encoding="utf-8")
    (bad / "unknown_chars.tsv").write_text(f"{dev[0]}\n\n{question}\tZ\u00fcrich\n", encoding="utf-8")
    (bad / "too_long.tsv").write_text(f"{dev[0]}\n{question * 8}\tParis\n", encoding="utf-8")
    (bad / "latin1.txt").write_bytes("\n".join(wiki[:2] + ["Caf\u00e9"] + wiki[2:]).encode("latin-1"))
    (bad / "latin1.tsv").write_bytes(f"{dev[0]}\n{question}\tZ\u00fcrich\n".encode("latin-1"))
    unreadable = bad / "unreadable.txt"
    unreadable.write_text("\n".join(wiki), encoding="utf-8")
    unreadable.chmod(0)
    params = pretrained[0]
    # resumable checkpoints that are not: one cut short, one that is a params file
    (bad / "cut.params.ckpt").write_bytes(params.read_bytes()[:1000])
    (bad / "foreign.params.ckpt").write_bytes(params.read_bytes())
    write = ("--writing_params_path", bad / "x.params")
    predict = ("--reading_params_path", params, "--outputs_path", bad / "x.predictions")
    cases = {
        "missing_corpus": ("pretrain", "vanilla", bad / "missing_wiki.txt", "--writing_params_path",
                           bad / "x.params"),
        "corpus_is_a_directory": ("pretrain", "vanilla", bad, *write),
        "empty_corpus": ("pretrain", "vanilla", bad / "empty.txt", *write),
        "non_utf8_corpus": ("pretrain", "vanilla", bad / "latin1.txt", *write),
        "missing_tsv": ("finetune", "vanilla", corpus["wiki"], "--finetune_corpus_path", bad / "nope.tsv", *write),
        "empty_tsv": ("finetune", "vanilla", corpus["wiki"], "--finetune_corpus_path", bad / "empty.tsv", *write),
        "blank_tsv": ("finetune", "vanilla", corpus["wiki"], "--finetune_corpus_path", bad / "blank.tsv", *write),
        "extra_columns": ("finetune", "vanilla", corpus["wiki"], "--finetune_corpus_path", bad / "extra.tsv",
                          *write),
        "unknown_chars": ("finetune", "vanilla", corpus["wiki"], "--finetune_corpus_path",
                          bad / "unknown_chars.tsv", *write),
        "too_long": ("finetune", "vanilla", corpus["wiki"], "--finetune_corpus_path", bad / "too_long.tsv",
                     *write),
        "non_utf8_tsv": ("finetune", "vanilla", corpus["wiki"], "--finetune_corpus_path", bad / "latin1.tsv",
                         *write),
        "eval_empty": ("evaluate", "vanilla", corpus["wiki"], "--eval_corpus_path", bad / "empty.tsv", *predict),
        "eval_missing": ("evaluate", "vanilla", corpus["wiki"], "--eval_corpus_path", bad / "nope.tsv", *predict),
        "eval_extra_columns": ("evaluate", "vanilla", corpus["wiki"], "--eval_corpus_path", bad / "extra.tsv",
                               *predict),
        "eval_half_answers": ("evaluate", "vanilla", corpus["wiki"], "--eval_corpus_path",
                              bad / "half_answers.tsv", *predict),
        "eval_non_utf8": ("evaluate", "vanilla", corpus["wiki"], "--eval_corpus_path", bad / "latin1.tsv",
                          *predict),
        "unknown_function": ("generate", "vanilla", corpus["wiki"], *write),
        "bottleneck_zero": ("pretrain", "perceiver", corpus["wiki"], "--bottleneck_dim", 0, *write),
        "bottleneck_too_big": ("pretrain", "perceiver", corpus["wiki"], "--bottleneck_dim", 129, *write),
        "nan_loss": ("pretrain", "vanilla", corpus["wiki"], "--pretrain_lr", 1e30, *write),
        "no_tab": ("finetune", "vanilla", corpus["wiki"], "--finetune_corpus_path", bad / "no_tab.tsv",
                   "--writing_params_path", bad / "x.params"),
        "pad_in_corpus": ("pretrain", "vanilla", bad / "pad.txt", "--writing_params_path", bad / "x.params"),
        "mask_in_corpus": ("pretrain", "vanilla", bad / "mask.txt", "--writing_params_path", bad / "x.params"),
        "other_variant": ("evaluate", "rope", corpus["wiki"], "--reading_params_path", params,
                          "--eval_corpus_path", corpus["dev"], "--outputs_path", bad / "x.predictions"),
        "unknown_variant": ("pretrain", "transformerxl", corpus["wiki"], "--writing_params_path",
                            bad / "x.params"),
        "outputs_dir_missing": ("evaluate", "vanilla", corpus["wiki"], "--reading_params_path", params,
                                "--eval_corpus_path", corpus["dev"], "--outputs_path",
                                bad / "no_such_dir" / "x.predictions"),
        "params_dir_missing": ("pretrain", "vanilla", corpus["wiki"], "--writing_params_path",
                               bad / "no_such_dir" / "x.params"),
        "missing_params": ("evaluate", "vanilla", corpus["wiki"], "--reading_params_path", bad / "nope.params",
                           "--eval_corpus_path", corpus["dev"], "--outputs_path", bad / "x.predictions"),
        "cut_checkpoint": ("pretrain", "vanilla", corpus["wiki"], "--writing_params_path", bad / "cut.params",
                           "--resume"),
        "foreign_checkpoint": ("pretrain", "vanilla", corpus["wiki"], "--writing_params_path",
                               bad / "foreign.params", "--resume"),
    }
    if os.access(unreadable, os.R_OK):  # root reads it anyway; the case would train and write x.params
        unreadable.chmod(0o644)
    else:
        cases["unreadable_corpus"] = ("pretrain", "vanilla", unreadable, *write)
    before = {name: (bad / name).stat().st_mtime_ns for name in os.listdir(bad)}
    results = run_in_one_interpreter({name: (RUN, [*args, *TINY], bad) for name, args in cases.items()})
    # nothing written, not even half (no .tmp, no .ckpt), nothing overwritten (the bad checkpoints)
    assert {name: (bad / name).stat().st_mtime_ns for name in os.listdir(bad)} == before
    return results


EXPECTED = {  # what the one-line message must mention
    "missing_corpus": ["missing_wiki.txt"],
    "no_tab": ["no_tab.tsv", "line 2", "tab"],
    "pad_in_corpus": ["line 4"],
    "mask_in_corpus": ["line 2"],
    "other_variant": ["vanilla", "rope"],
    "outputs_dir_missing": ["no_such_dir"],
    "params_dir_missing": ["no_such_dir"],
    "missing_params": ["nope.params"],
    "cut_checkpoint": ["cut.params.ckpt", "cannot resume from", "without --resume"],
    "foreign_checkpoint": ["foreign.params.ckpt", "cannot resume from", "without --resume"],
    "corpus_is_a_directory": ["directory"],
    "empty_corpus": ["empty"],
    "non_utf8_corpus": ["latin1.txt", "UTF-8", "line 3"],
    "missing_tsv": ["nope.tsv", "not found"],
    "empty_tsv": ["empty.tsv", "no question"],
    "blank_tsv": ["blank.tsv", "no question"],
    "extra_columns": ["extra.tsv", "line 2", "3 tab-separated fields"],
    "unknown_chars": ["unknown_chars.tsv", "line 3", "\u00fc", "vocabulary"],
    "too_long": ["too_long.tsv", "line 2", "too long", "block size is 128"],
    "non_utf8_tsv": ["latin1.tsv", "UTF-8", "line 2"],
    "eval_empty": ["empty.tsv", "no questions"],
    "eval_missing": ["nope.tsv", "not found"],
    "eval_extra_columns": ["extra.tsv", "line 2", "3 tab-separated fields"],
    "eval_half_answers": ["half_answers.tsv", "line 3", "no answer"],
    "eval_non_utf8": ["latin1.tsv", "UTF-8", "line 2"],
    "unreadable_corpus": ["unreadable.txt", "Permission denied"],
}


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_bad_input_gives_one_line_error(bad_runs, case):
    if case not in bad_runs:
        pytest.skip("running as root: a chmod 000 file is still readable")
    result = bad_runs[case]
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in EXPECTED[case]:
        assert word in lines[0], (word, lines[0])
    assert "took" not in result.stdout  # it stopped before any training


def test_reserved_characters_named(bad_runs):
    assert "\u25a1" in bad_runs["pad_in_corpus"].stderr or "U+25A1" in bad_runs["pad_in_corpus"].stderr
    assert "\u2047" in bad_runs["mask_in_corpus"].stderr or "U+2047" in bad_runs["mask_in_corpus"].stderr


def test_unknown_variant_is_an_argparse_error(bad_runs):
    result = bad_runs["unknown_variant"]
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "error:" in last and "transformerxl" in last
    for variant in ("vanilla", "rope", "perceiver", "synthesizer"):
        assert variant in last


def test_non_finite_loss_stops_naming_the_step(bad_runs):
    """Stopped mid-training: the progress bar was on stderr, the error is its last line; no params."""
    result = bad_runs["nan_loss"]
    assert result.returncode == 1 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: training loss became") and re.search(r"at step \d+", last), last
    assert "took" not in result.stdout  # (the fixture checks that nothing was written)


@pytest.mark.parametrize("case,words", [
    ("unknown_function", ["generate", "pretrain", "finetune", "evaluate"]),
    ("bottleneck_zero", ["--bottleneck_dim", "128"]),
    ("bottleneck_too_big", ["--bottleneck_dim", "128"]),
])
def test_bad_arguments_are_argparse_errors(bad_runs, case, words):
    """argparse's usage line, then one error line; exit status 2."""
    result = bad_runs[case]
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("usage:") and "error:" in lines[-1]
    for word in words:
        assert word in lines[-1], (word, lines[-1])
    assert "took" not in result.stdout


# -----------------------------------------------------------------------------
# XCS224N Fall 2025's form: --function=F --variant=V --pretrain_corpus_path=P, then the same options

@pytest.mark.parametrize("ours,theirs", [
    ("pretrain rope wiki.txt --writing_params_path rope.pretrain.params",
     "--function=pretrain --variant=rope --pretrain_corpus_path=wiki.txt --writing_params_path=rope.pretrain.params"),
    ("finetune vanilla wiki.txt --reading_params_path a.params --writing_params_path b.params "
     "--finetune_corpus_path t.tsv --tb_expt_name x --pretrain_lr 0.001 --finetune_lr 0.0002",
     "--function=finetune --variant=vanilla --pretrain_corpus_path=wiki.txt --reading_params_path=a.params "
     "--writing_params_path=b.params --finetune_corpus_path=t.tsv --tb_expt_name=x --pretrain_lr=0.001 "
     "--finetune_lr=0.0002"),
    # any order, option values after a space, and --no-compile, the default
    ("evaluate rope wiki.txt --reading_params_path a.params --eval_corpus_path d.tsv --outputs_path p.txt",
     "--outputs_path=p.txt --variant rope --function evaluate --pretrain_corpus_path wiki.txt "
     "--reading_params_path=a.params --eval_corpus_path=d.tsv --no-compile"),
    ("pretrain vanilla wiki.txt --compile --backend aot_eager --n_layer 2",
     "--function=pretrain --variant=vanilla --pretrain_corpus_path=wiki.txt --compile --backend=aot_eager "
     "--n_layer 2"),
])
def test_course_form_parses_as_ours(ours, theirs):
    args = run_py.parse_args(theirs.split())
    assert [args.function, args.variant, args.pretrain_corpus_path] == ours.split()[:3]
    assert vars(args) == vars(run_py.parse_args(ours.split()))


def test_compile_options():
    base = "pretrain vanilla wiki.txt".split()
    default = run_py.parse_args(base)
    assert (default.compile, default.backend) == (False, "inductor")
    assert run_py.parse_args(base + ["--no-compile"]).compile is False
    assert run_py.parse_args(base + ["--compile"]).compile is True
    assert run_py.parse_args(base + ["--backend=cudagraphs"]).backend == "cudagraphs"


@pytest.mark.parametrize("argv,words", [
    ("finetune vanilla wiki.txt --function=finetune --variant=vanilla --pretrain_corpus_path=wiki.txt",
     ["positional arguments (finetune vanilla wiki.txt)", "--function=", "not both"]),
    ("finetune vanilla wiki.txt --function=finetune", ["--variant=, --pretrain_corpus_path= missing", "positional"]),
    ("--function=pretrain --variant=rope wiki.txt", ["--pretrain_corpus_path= missing"]),
    ("--function=pretrain --variant=rope --pretrain_corpus_path=wiki.txt --bogus", ["unrecognized arguments: --bogus"]),
    ("--function=pretrain --variant=rope --pretrain_corpus_path=wiki.txt --backend=tvm", ["--backend", "tvm",
                                                                                        "aot_eager"]),
])
def test_mixed_or_incomplete_forms_are_argparse_errors(capsys, argv, words):
    with pytest.raises(SystemExit) as exit:
        run_py.parse_args(argv.split())
    assert exit.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("usage:") and "error:" in lines[-1] and "Traceback" not in "".join(lines)
    for word in words:
        assert word in lines[-1], (word, lines[-1])


@pytest.fixture(scope="module")
def course_form_finetuned(work, corpus):
    """The handout's finetune line without pretraining, our tiny sizes after it."""
    path = work / "course_form.params"
    ok(run("--function=finetune", "--variant=vanilla", f"--pretrain_corpus_path={corpus['wiki']}",
           f"--writing_params_path={path}", f"--finetune_corpus_path={corpus['train']}", *TINY, cwd=work))
    return path


def test_course_form_finetune_trains_as_ours(course_form_finetuned, finetuned_from_scratch):
    """Both forms give the same run: the same seed, the same weights."""
    theirs, ours = torch.load(course_form_finetuned), torch.load(finetuned_from_scratch)
    assert set(theirs) == set(ours)
    assert all(torch.equal(theirs[k], ours[k]) for k in ours)


def test_course_form_evaluate_writes_predictions(work, corpus, course_form_finetuned):
    out = work / "course_form.dev.predictions"
    result = ok(run("--function=evaluate", "--variant=vanilla", f"--pretrain_corpus_path={corpus['wiki']}",
                    f"--reading_params_path={course_form_finetuned}", f"--eval_corpus_path={corpus['dev']}",
                    f"--outputs_path={out}", "--device", "cpu", cwd=work))
    # (an untrained model's predictions may hold newlines: count them in the record, not the file's lines)
    with open(f"{out}.json", encoding="utf-8") as f:
        record = json.load(f)
    assert record["questions"] == len(lines_of(corpus["dev"])) and record["predictions"] == str(out)
    assert out.read_text(encoding="utf-8").endswith("\n")
    match = CORRECT.search(result.stdout)
    assert match and int(match.group(2)) == len(lines_of(corpus["dev"])), result.stdout


@pytest.mark.parametrize("flags,backend", [(["--compile", "--backend=aot_eager"], "aot_eager"),
                                           (["--compile"], "inductor"),
                                           (["--no-compile", "--backend=cudagraphs"], None)])
def test_backend_reaches_torch_compile(work, corpus, monkeypatch, capsys, flags, backend):
    """run.py in this process, torch.compile replaced by a stand-in that records its backend and leaves
    the model as it is."""
    backends = []

    def compile_stand_in(model, backend="inductor", **kwargs):
        backends.append(backend)
        return model

    monkeypatch.setattr(torch, "compile", compile_stand_in)
    path = work / f"compiled_{backend}.params"
    run_py.main(["--function=pretrain", "--variant=vanilla", f"--pretrain_corpus_path={corpus['wiki']}",
                 f"--writing_params_path={path}", *flags, *TINY, "--pretrain_epochs", "1"])
    assert backends == ([backend] if backend else [])
    assert path.is_file()
    assert f"torch.compile: {f'on ({backend})' if backend else 'off'}" in capsys.readouterr().out


# -----------------------------------------------------------------------------
# london_baseline.py

def test_london_baseline(tmp_path):
    dev = tmp_path / "dev.tsv"
    dev.write_text("Where was A born?\tLondon\nWhere was B born?\tParis\n\nWhere was C born?\tLondon\n"
                   "Where was D born?\tRome\nWhere was E born?\tLondonderry\n", encoding="utf-8")
    train = tmp_path / "train.tsv"
    train.write_text("Where was F born?\tRome\nWhere was G born?\tLondon\n\nWhere was H born?\tRome\n"
                     "Where was I born?\tParis\n", encoding="utf-8")
    bad_train = tmp_path / "bad_train.tsv"
    bad_train.write_text("Where was F born?\tRome\n\nWhere was G born? London\n", encoding="utf-8")
    results = run_in_one_interpreter({
        "london": (LONDON, ["--eval_corpus_path", dev, "--outputs_path", tmp_path / "london.txt"], tmp_path),
        "common": (LONDON, ["--eval_corpus_path", dev, "--most_common_from", train, "--outputs_path",
                            tmp_path / "common.txt"], tmp_path),
        "bad": (LONDON, ["--eval_corpus_path", dev, "--most_common_from", bad_train, "--outputs_path",
                         tmp_path / "bad.txt"], tmp_path),
    })
    london, common, bad = results["london"], results["common"], results["bad"]

    ok(london)
    assert float((tmp_path / "london.txt").read_text()) == pytest.approx(100.0 * 2 / 5)
    match = CORRECT.search(london.stdout)
    assert match and (int(match.group(1)), int(match.group(2))) == (2, 5)
    assert float(match.group(3)) == pytest.approx(40.0)

    ok(common)
    assert Counter(["Rome", "London", "Rome", "Paris"]).most_common(1)[0][0] == "Rome"
    assert float((tmp_path / "common.txt").read_text()) == pytest.approx(100.0 * 1 / 5)
    assert "Rome" in common.stdout
    match = CORRECT.search(common.stdout)
    assert match and (int(match.group(1)), int(match.group(2))) == (1, 5)

    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "line 3" in lines[0]
    assert not (tmp_path / "bad.txt").exists()


REAL_DEV = os.path.join(os.path.dirname(ROOT), "shared", "data", "birth_dev.tsv")


@pytest.mark.skipif(not os.path.isfile(REAL_DEV), reason="real data not in ../shared/data")
def test_london_baseline_on_the_real_dev_set(tmp_path, capsys):
    import london_baseline
    out = tmp_path / "london_baseline_accuracy.txt"
    london_baseline.main(["--eval_corpus_path", REAL_DEV, "--outputs_path", str(out)])
    assert float(out.read_text()) == 5.0  # 25 Londoners of 500
    assert "Correct: 25 out of 500: 5.0%" in capsys.readouterr().out
