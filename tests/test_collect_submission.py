"""
collect_submission.sh: zips exactly src/ (no caches) and the files of the chosen year's handout or XCS224N
cohort, refuses with the list of what is missing, and zips what there is with --allow-partial.
"""
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "collect_submission.sh")

NOPRETRAIN = ["vanilla.model.params", "vanilla.nopretrain.dev.predictions", "vanilla.nopretrain.test.predictions",
              "london_baseline_accuracy.txt"]


def pretrained(v):
    return [f"{v}.finetune.params", f"{v}.pretrain.dev.predictions", f"{v}.pretrain.test.predictions"]


EXPECTED = {
    "2021": NOPRETRAIN + pretrained("vanilla") + pretrained("synthesizer")
    + ["vanilla.pretrain.params", "synthesizer.pretrain.params"],
    "2023": NOPRETRAIN + pretrained("vanilla") + pretrained("perceiver"),
    "2024": NOPRETRAIN + pretrained("vanilla") + pretrained("rope"),
    "2025": NOPRETRAIN + pretrained("vanilla") + pretrained("rope"),
}
EXPECTED["all"] = sorted(set().union(*EXPECTED.values()))


def collect(*args, script=SCRIPT):
    # PYTHON: this interpreter, also for a copy of the repository without .venv
    return subprocess.run([script, *args], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHON=sys.executable))


def src_files(root):
    found = set()
    for folder, dirs, files in os.walk(os.path.join(root, "src")):
        dirs[:] = [d for d in dirs if d != "__pycache__" and not d.startswith(".")]
        found |= {os.path.relpath(os.path.join(folder, f), root).replace(os.sep, "/")
                  for f in files if not f.endswith(".pyc") and not f.startswith(".")}
    return found


@pytest.fixture
def outputs(tmp_path):
    """Every file any year asks for, with a little content."""
    d = tmp_path / "outputs"
    d.mkdir()
    for name in EXPECTED["all"]:
        (d / name).write_text(f"contents of {name}\n")
    return d


@pytest.mark.parametrize("year", ["2021", "2023", "2024", "all"])
def test_zips_exactly_the_expected_files(year, outputs, tmp_path):
    out = tmp_path / f"{year}.zip"
    result = collect("--year", year, "--dir", str(outputs), "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    names = zipfile.ZipFile(out).namelist()
    assert len(names) == len(set(names))
    assert set(names) == src_files(ROOT) | set(EXPECTED[year])
    assert "src/run.py" in names and "src/model.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert zipfile.ZipFile(out).read("vanilla.model.params") == b"contents of vanilla.model.params\n"


def test_default_year_is_all_and_default_name(outputs, tmp_path):
    # a copy of the script in a fake repo: the default --out goes to its root, next to src/
    repo = tmp_path / "repo"
    (repo / "src" / "__pycache__").mkdir(parents=True)
    (repo / "src" / "run.py").write_text("print('hi')\n")
    (repo / "src" / "run.cpython-311.pyc").write_bytes(b"\0")
    (repo / "src" / "__pycache__" / "run.cpython-311.pyc").write_bytes(b"\0")
    (repo / "src" / ".DS_Store").write_bytes(b"\0")
    shutil.copy(SCRIPT, repo / "collect_submission.sh")
    result = collect("--dir", str(outputs), script=str(repo / "collect_submission.sh"))
    assert result.returncode == 0, result.stdout + result.stderr
    names = set(zipfile.ZipFile(repo / "assignment_submission.zip").namelist())
    assert names == {"src/run.py"} | set(EXPECTED["all"])


def test_missing_files_are_listed_and_refused(outputs, tmp_path):
    (outputs / "rope.pretrain.test.predictions").unlink()
    (outputs / "london_baseline_accuracy.txt").unlink()
    out = tmp_path / "a4.zip"
    result = collect("--year", "2025", "--dir", str(outputs), "--out", str(out))
    assert result.returncode != 0
    assert "rope.pretrain.test.predictions" in result.stderr
    assert "london_baseline_accuracy.txt" in result.stderr
    assert "--allow-partial" in result.stderr
    assert not out.exists()
    assert not list(tmp_path.glob("a4.zip.tmp*"))

    result = collect("--year", "2025", "--dir", str(outputs), "--out", str(out), "--allow-partial")
    assert result.returncode == 0, result.stderr
    assert "rope.pretrain.test.predictions" in result.stderr  # still listed
    names = set(zipfile.ZipFile(out).namelist())
    assert names == src_files(ROOT) | (set(EXPECTED["2025"]) - {"rope.pretrain.test.predictions",
                                                                 "london_baseline_accuracy.txt"})


def test_perceiver_year_does_not_need_rope(outputs, tmp_path):
    for name in pretrained("rope"):
        (outputs / name).unlink()
    assert collect("--year", "2023", "--dir", str(outputs), "--out", str(tmp_path / "a5.zip")).returncode == 0
    assert collect("--year", "2024", "--dir", str(outputs), "--out", str(tmp_path / "a4.zip")).returncode != 0


def test_unknown_year_is_an_error(tmp_path):
    result = collect("--year", "2022", "--out", str(tmp_path / "x.zip"))
    assert result.returncode != 0 and "2022" in result.stderr


# ----------------------------------------------------------------------------- XCS224N's two cohorts

XCS_CODE = [f"src/submission/{name}.py" for name in
            ("__init__", "attention", "dataset", "helper", "model", "trainer", "utils")]


def xcs_outputs(variant):
    """The outputs of a cohort whose second variant is this one: vanilla's, then the variant's."""
    return EXPECTED["2021"][:3] + [f"{v}.{suffix}" for v in ("vanilla", variant) for suffix in (
        "pretrain.params", "finetune.params", "pretrain.dev.predictions", "pretrain.test.predictions")]


XCS_OUTPUTS = xcs_outputs("synthesizer")


def test_xcs_zips_its_handout_list_in_src_submission(outputs, tmp_path):
    out = tmp_path / "xcs.zip"
    result = collect("--course", "xcs224n", "--dir", str(outputs), "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    names = zipfile.ZipFile(out).namelist()
    assert len(names) == len(set(names))
    # the 18 files of the handout's Deliverables, and src/ that the package imports; no London baseline
    assert set(XCS_CODE) <= set(names)
    assert set(names) == src_files(ROOT) | {f"src/submission/{name}" for name in XCS_OUTPUTS}
    assert zipfile.ZipFile(out).read("src/submission/synthesizer.pretrain.params") == \
        b"contents of synthesizer.pretrain.params\n"


def test_xcs_2025_zips_the_rope_cohorts_files(outputs, tmp_path):
    for name in ("rope.pretrain.params",):
        (outputs / name).write_text(f"contents of {name}\n")
    out = tmp_path / "xcs2025.zip"
    result = collect("--course", "xcs224n-2025", "--dir", str(outputs), "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    names = set(zipfile.ZipFile(out).namelist())
    assert names == src_files(ROOT) | {f"src/submission/{name}" for name in xcs_outputs("rope")}
    assert not [n for n in names if "synthesizer." in n]


# what the cohorts' file lists are read from (src/course.py's variants, through src/runs.py)
LIST_MODULES = ["src/runs.py", "src/course.py", "src/model.py", "src/attention.py", "src/packing.py"]


def test_xcs_outputs_default_to_src_submission_and_are_not_zipped_as_code(outputs, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(os.path.join(ROOT, "src", "submission"), repo / "src" / "submission",
                    ignore=shutil.ignore_patterns("__pycache__", "*.params", "*.predictions"))
    for name in LIST_MODULES:
        shutil.copy(os.path.join(ROOT, name), repo / name)
    for name in XCS_OUTPUTS[:-1]:
        shutil.copy(outputs / name, repo / "src" / "submission" / name)
    shutil.copy(SCRIPT, repo / "collect_submission.sh")
    script = str(repo / "collect_submission.sh")
    result = collect("--course", "xcs224n", script=script)
    assert result.returncode != 0 and XCS_OUTPUTS[-1] in result.stderr
    assert "./run.sh --course xcs224n help" in result.stderr
    assert collect("--course", "xcs224n", "--allow-partial", script=script).returncode == 0
    names = zipfile.ZipFile(repo / "submission_xcs224n.zip").namelist()
    assert sorted(names) == sorted(XCS_CODE + LIST_MODULES + [f"src/submission/{name}" for name in XCS_OUTPUTS[:-1]])
    # a CS224N zip leaves the XCS runs out: they are outputs, not code
    assert collect("--year", "2021", "--dir", str(outputs), script=script).returncode == 0
    names = zipfile.ZipFile(repo / "assignment5.zip").namelist()
    assert not [n for n in names if n.endswith((".params", ".predictions")) and n.startswith("src/")]
