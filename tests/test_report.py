"""
tools/report.py (./run.sh report): the markdown table, results.json and the loss plots, from
run.sh's records of a tiny real run (LOG.json), the records its runs wrote and its TensorBoard files, from
the records of one or more demos (each in its own results/demo-*/logs/), and from nothing at all.
"""
import json
import os
import subprocess
import sys

import pytest

import report
from make_synthetic_corpus import make_corpus

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
TINY = ["--n_layer", "2", "--n_head", "2", "--n_embd", "32", "--dropout", "0", "--pretrain_epochs", "2",
        "--finetune_epochs", "2", "--device", "cpu", "--tb_expt_name", "tiny"]


def logged(logs, name, output, cmd, cwd):
    """Run cmd and log it the way run.sh does: '+ command', then stdout and stderr, in NAME.log; the command,
    its output and its exit status in NAME.json."""
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    with open(os.path.join(logs, f"{name}.log"), "w", encoding="utf-8") as f:
        f.write("+ " + " ".join(cmd) + "\n" + result.stdout + result.stderr)
    with open(os.path.join(logs, f"{name}.json"), "w", encoding="utf-8") as f:
        json.dump({"command": cmd, "output": output, "exit_status": result.returncode}, f)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """london_baseline and vanilla pretrain -> finetune -> evaluate dev on a 40-person corpus,
    with TensorBoard on (cwd is the tmp dir, so expt/ lands there)."""
    tmp = tmp_path_factory.mktemp("tiny_run")
    d = make_corpus(str(tmp / "data"), n_people=40, seed=0)
    logs = tmp / "logs"
    logs.mkdir()
    run_py, out = os.path.join(ROOT, "src", "run.py"), str(tmp)
    logged(logs, "london_baseline", f"{out}/london_baseline_accuracy.txt", [PY, os.path.join(ROOT, "src", "london_baseline.py"), "--eval_corpus_path",
                                     d["dev"], "--outputs_path", f"{out}/london_baseline_accuracy.txt"], tmp)
    logged(logs, "vanilla_pretrain", f"{out}/vanilla.pretrain.params", [PY, run_py, "pretrain", "vanilla", d["wiki"], "--writing_params_path",
                                      f"{out}/vanilla.pretrain.params", *TINY], tmp)
    logged(logs, "vanilla_finetune_with_pretrain", f"{out}/vanilla.finetune.params",
           [PY, run_py, "finetune", "vanilla", d["wiki"], "--reading_params_path", f"{out}/vanilla.pretrain.params",
            "--writing_params_path", f"{out}/vanilla.finetune.params", "--finetune_corpus_path", d["train"], *TINY], tmp)
    logged(logs, "vanilla_eval_dev_with_pretrain", f"{out}/vanilla.pretrain.dev.predictions",
           [PY, run_py, "evaluate", "vanilla", d["wiki"], "--reading_params_path", f"{out}/vanilla.finetune.params",
            "--eval_corpus_path", d["dev"], "--outputs_path", f"{out}/vanilla.pretrain.dev.predictions", *TINY], tmp)
    return tmp


def test_report_command_writes_table_json_and_plots(tiny_run):
    out = tiny_run / "report"
    result = subprocess.run([os.path.join(ROOT, "run.sh"), "report", "--logs", str(tiny_run / "logs"),
                             "--runs", str(tiny_run / "expt"), "--out", str(out)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr

    data = json.loads((out / "results.json").read_text())
    runs = {r["run"]: r for r in data["assignment"]["runs"]}
    assert set(runs) == {"vanilla, no pretraining", "vanilla, pretrained", "rope, pretrained",
                         "perceiver, pretrained", "synthesizer, pretrained"}
    vanilla = runs["vanilla, pretrained"]
    model_line = next(line for line in (tiny_run / "logs" / "vanilla_pretrain.log").read_text().splitlines()
                      if line.startswith("model: "))
    assert f"{vanilla['parameters']:,} parameters" in model_line
    assert vanilla["dev"]["total"] == 7 and 0 <= vanilla["dev"]["correct"] <= 7
    assert vanilla["pretrain_s"] > 0 and vanilla["finetune_s"] > 0
    assert vanilla["device"] == "cpu" and vanilla["dtype"] == "float32"
    assert vanilla["status"] == "partial" and vanilla["missing"] == ["vanilla_eval_test_with_pretrain"]
    assert vanilla["test_predictions"] is None
    assert runs["rope, pretrained"]["status"] == "not run" and runs["rope, pretrained"]["dev"] is None
    london = data["assignment"]["london_baseline"]
    assert london["place"] == "London" and london["accuracy"]["total"] == 7

    readme = (out / "README.md").read_text()
    assert "| run | dev accuracy | test predictions | parameters |" in readme
    row = next(line for line in readme.splitlines() if line.startswith("| vanilla, pretrained |"))
    assert f"{vanilla['dev']['percent']:.1f}%" in row and f"{vanilla['parameters']:,}" in row and "cpu" in row
    rope_row = next(line for line in readme.splitlines() if line.startswith("| rope, pretrained |"))
    assert rope_row.count("—") >= 4
    assert "London baseline" in readme

    phases = {p["phase"]: p for p in data["plots"]}
    assert set(phases) == {"pretrain", "finetune"}
    for p in phases.values():
        with open(p["png"], "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
        assert os.path.basename(p["png"]) in readme
        assert p["runs"] == ["tiny_vanilla_32_pt_lr_0.006000_ft_lr_0.000600"]


def demo_logs(out):
    """The logs of a `./run.sh demo rope` whose pretraining was stopped, and the results JSON its finished
    commands wrote into out/: {step: (log text, run.sh's record)}."""
    def record(name, **figures):
        path = os.path.join(out, name)
        os.makedirs(out, exist_ok=True)
        with open(path + ".json", "w") as f:
            json.dump(figures, f)
        return path

    def ran(output, exit_status, *command):
        return {"command": ["python", *command], "output": output, "exit_status": exit_status}
    gpu = dict(device="NVIDIA H100 80GB HBM3", dtype="bf16 autocast", variant="rope", parameters=3_323_392,
               model={"variant": "rope", "bottleneck_dim": None})
    baseline = record("baseline_accuracy.txt", function="baseline", place="Paris", correct=9, total=85,
                      percent=10.588)
    nopretrain = record("nopretrain.params", function="finetune", seconds=20.1, **gpu)
    dev = record("nopretrain.dev.predictions", function="evaluate", correct=2, total=85,
                 percent=2.3529411764705883, **gpu)
    pretrain = os.path.join(out, "pretrain.params")
    return {
        "baseline": ("Always answering 'Paris' on data/synthetic/birth_dev.tsv: Correct: 9 out of 85: 10.588%\n",
                     ran(baseline, 0, "src/london_baseline.py", "--outputs_path", baseline)),
        "finetune_without_pretrain": ("finetune:  50%|##| 1/2\rfinetune: 100%|##| 2/2\nfinetune took 20.1 s\n",
                                      ran(nopretrain, 0, "src/run.py", "finetune", "rope")),
        "eval_without_pretrain": ("Correct: 2 out of 85: 2.3529411764705883%\n",
                                  ran(dev, 0, "src/run.py", "evaluate", "rope", "--outputs_path", dev)),
        "pretrain": ("KeyboardInterrupt\ninterrupted\n", ran(pretrain, 130, "src/run.py", "pretrain", "rope")),
    }


def write_logs(logs, texts):
    logs.mkdir(parents=True, exist_ok=True)
    for step, (text, status) in texts.items():
        (logs / f"{step}.log").write_text(text)
        (logs / f"{step}.json").write_text(json.dumps(status))


def report_of(results):
    """report.main on the run.sh layout under results/: logs/ and demo-*/logs/."""
    return report.main(["--logs", str(results / "logs"), "--runs", str(results / "no_expt"),
                        "--out", str(results / "out")])


def test_demo_logs_and_failures(tmp_path):
    write_logs(tmp_path / "demo-rope" / "logs", demo_logs(str(tmp_path / "demo-rope")))
    data = report_of(tmp_path)
    assert data["assignment"] is None and list(data["demo"]) == ["demo-rope"]
    demo = data["demo"]["demo-rope"]
    assert demo["logs_dir"] == str(tmp_path / "demo-rope" / "logs")
    runs = {r["run"]: r for r in demo["runs"]}
    nopre, pre = runs["rope, no pretraining"], runs["rope, pretrained"]
    assert nopre["dev"] == {"correct": 2, "total": 85, "percent": 2.3529411764705883}
    assert nopre["finetune_s"] == 20.1 and nopre["parameters"] == 3323392
    assert nopre["device"] == "NVIDIA H100 80GB HBM3" and nopre["dtype"] == "bf16 autocast"
    assert pre["status"] == "failed" and "pretrain" in pre["errors"]
    assert pre["missing"] == ["finetune_with_pretrain", "eval_with_pretrain"]
    assert demo["baseline"]["place"] == "Paris"
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "### demo-rope" in readme
    assert "| rope, no pretraining | 2.4% (2/85) |" in readme
    assert "failed (see pretrain)" in readme
    assert "## The assignment's runs" not in readme
    assert data["plots"] == [] and "no TensorBoard event files" in readme


def test_every_demo_directory_is_reported(tmp_path):
    """Two demos keep their own logs and rows, named by their directories, not by the variant."""
    write_logs(tmp_path / "demo-rope" / "logs", demo_logs(str(tmp_path / "demo-rope")))
    out = tmp_path / "demo-vanilla-shared_qk"
    shared_qk = {step: logged for step, logged in demo_logs(str(out)).items() if step != "pretrain"}
    for name in ("nopretrain.params.json", "nopretrain.dev.predictions.json"):  # vanilla, and 7 correct
        path = out / name
        path.write_text(path.read_text().replace("rope", "vanilla").replace('"correct": 2', '"correct": 7')
                        .replace("2.3529411764705883", "8.235294117647058"))
    write_logs(tmp_path / "demo-vanilla-shared_qk" / "logs", shared_qk)
    (tmp_path / "demo-empty" / "logs").mkdir(parents=True)  # no logs: not a demo to report
    data = report_of(tmp_path)
    assert list(data["demo"]) == ["demo-rope", "demo-vanilla-shared_qk"]
    on_disk = json.loads((tmp_path / "out" / "results.json").read_text())["demo"]
    assert list(on_disk) == ["demo-rope", "demo-vanilla-shared_qk"]
    rope = {r["run"]: r for r in on_disk["demo-rope"]["runs"]}
    shared = {r["run"]: r for r in on_disk["demo-vanilla-shared_qk"]["runs"]}
    assert rope["rope, no pretraining"]["dev"]["correct"] == 2 and rope["rope, pretrained"]["status"] == "failed"
    assert shared["vanilla, no pretraining"]["dev"]["correct"] == 7
    assert shared["vanilla, pretrained"]["status"] == "not run" and not shared["vanilla, pretrained"]["errors"]

    readme = (tmp_path / "out" / "README.md").read_text()
    rope_at, shared_at = readme.index("### demo-rope\n"), readme.index("### demo-vanilla-shared_qk\n")
    assert rope_at < readme.index("| rope, no pretraining | 2.4% (2/85) |") < shared_at
    assert shared_at < readme.index("| vanilla, no pretraining | 8.2% (7/85) |")
    assert readme.count("Most common place baseline on the dev set (always 'Paris')") == 2
    assert "demo-empty" not in readme


def test_nothing_to_report(tmp_path):
    data = report.main(["--logs", str(tmp_path / "missing"), "--runs", str(tmp_path / "missing"),
                        "--out", str(tmp_path / "out")])
    assert data["assignment"] is None and data["demo"] is None and data["plots"] == []
    assert "No run logs found" in (tmp_path / "out" / "README.md").read_text()
    assert json.loads((tmp_path / "out" / "results.json").read_text())["demo"] is None


def test_a_failed_run_is_failed_whatever_its_output_holds(tmp_path):
    """run.sh's record of a run that ended with an error (here Ctrl-C, 130) makes it failed, naming its log,
    even where an earlier run left the output's record."""
    write_logs(tmp_path / "demo-rope" / "logs", demo_logs(str(tmp_path / "demo-rope")))
    (tmp_path / "demo-rope" / "pretrain.params.json").write_text(json.dumps({"function": "pretrain", "seconds": 9}))
    runs = {r["run"]: r for r in report_of(tmp_path)["demo"]["demo-rope"]["runs"]}
    error = runs["rope, pretrained"]["errors"]["pretrain"]
    assert runs["rope, pretrained"]["status"] == "failed" and "exit status 130" in error and "pretrain.log" in error


def test_figures_come_from_the_results_json_not_the_printed_lines(tmp_path):
    """A log whose printed figures disagree with its JSON: the JSON wins; without the JSON, no figures."""
    logs = demo_logs(str(tmp_path / "demo-rope"))
    text, status = logs["eval_without_pretrain"]
    logs["eval_without_pretrain"] = (text.replace("Correct: 2", "Correct: 50"), status)
    write_logs(tmp_path / "demo-rope" / "logs", logs)
    runs = {r["run"]: r for r in report_of(tmp_path)["demo"]["demo-rope"]["runs"]}
    assert runs["rope, no pretraining"]["dev"]["correct"] == 2
    os.remove(tmp_path / "demo-rope" / "nopretrain.dev.predictions.json")
    runs = {r["run"]: r for r in report_of(tmp_path)["demo"]["demo-rope"]["runs"]}
    assert runs["rope, no pretraining"]["dev"] is None


def test_report_imports_no_regular_expressions():
    """The report reads records, never printed text."""
    assert "re" not in vars(report)
