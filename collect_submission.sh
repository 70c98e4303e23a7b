#!/usr/bin/env bash
# Build the submission zip: the src/ code plus the params, predictions and London baseline
# accuracy the handout of your year asks for.
#
#   ./collect_submission.sh [--year 2021|2023|2024|2025|all] [--dir DIR] [--out FILE] [--allow-partial]
#   ./collect_submission.sh --course xcs224n|xcs224n-2025 [--dir DIR] [--out FILE] [--allow-partial]
#
#   --year           2021: vanilla + synthesizer (also their pretrain params), -> assignment5.zip
#                    2023: vanilla + perceiver, -> assignment5.zip
#                    2024, 2025: vanilla + rope, -> assignment4.zip
#                    all (default): every file of every year above, -> assignment_submission.zip
#   --course C       an XCS224N cohort's list instead (xcs224n: the synthesizer year; xcs224n-2025: RoPE):
#                    src/submission/{__init__,attention,dataset,helper,model,trainer,utils}.py and the params
#                    and predictions of the cohort's runs (src/runs.py) as src/submission/NAME (from
#                    src/submission/, where ./run.sh --course C writes them), -> submission_C.zip; src/ goes
#                    with them, as the package imports its modules
#   --dir DIR        where the params and predictions are (default: the repo root, where run.sh writes them)
#   --out FILE       the zip to write (default: the name above, in the repo root)
#   --allow-partial  write the zip even when files are missing (they are still listed)
#
# Lists every missing file and exits 1 without writing anything unless --allow-partial.
# Uses Python's zipfile (PYTHON, else the .venv's Python, else python3), so no `zip` program is needed.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-"$ROOT/.venv/bin/python"}
[ -x "$PY" ] || command -v "$PY" >/dev/null || PY=python3
exec "$PY" - "$ROOT" "$@" <<'PYTHON'
import argparse
import os
import sys
import zipfile

root = sys.argv[1]
sys.path.insert(0, os.path.join(root, "src"))
NOPRETRAIN = ["vanilla.model.params", "vanilla.nopretrain.dev.predictions", "vanilla.nopretrain.test.predictions"]
LONDON = ["london_baseline_accuracy.txt"]


def pretrained(variant, pretrain_params=False):
    return ([f"{variant}.pretrain.params"] if pretrain_params else []) + \
        [f"{variant}.finetune.params", f"{variant}.pretrain.dev.predictions", f"{variant}.pretrain.test.predictions"]


# each year's handout list; the London baseline file goes with every year
YEARS = {
    "2021": NOPRETRAIN + pretrained("vanilla", True) + pretrained("synthesizer", True) + LONDON,
    "2023": NOPRETRAIN + pretrained("vanilla") + pretrained("perceiver") + LONDON,
    "2024": NOPRETRAIN + pretrained("vanilla") + pretrained("rope") + LONDON,
    "2025": NOPRETRAIN + pretrained("vanilla") + pretrained("rope") + LONDON,
}
YEARS["all"] = list(dict.fromkeys(f for year in ("2021", "2023", "2024") for f in YEARS[year]))
ZIP_NAMES = {"2021": "assignment5.zip", "2023": "assignment5.zip", "2024": "assignment4.zip",
             "2025": "assignment4.zip", "all": "assignment_submission.zip"}
# XCS224N's list (its handout's Deliverables): the package, then the cohort's runs but the London baseline,
# all in src/submission/
XCS_CODE = [f"{name}.py" for name in ("__init__", "attention", "dataset", "helper", "model", "trainer", "utils")]
OUTPUT_SUFFIXES = (".params", ".predictions", ".ckpt", ".params.json", ".predictions.json",
                   "london_baseline_accuracy.txt.json")  # run outputs and their records are not code, even in src/

p = argparse.ArgumentParser(prog="collect_submission.sh", description="Build the submission zip.")
p.add_argument("--year", choices=sorted(YEARS), default="all", help="the CS224N handout's year")
p.add_argument("--course", choices=["cs224n", "xcs224n", "xcs224n-2025"], default="cs224n")
p.add_argument("--dir", default=None, help="where the params and predictions are (default: the repo root; "
                                           "src/submission for xcs224n)")
p.add_argument("--out", default=None, help="the zip to write (default depends on --year, in the repo root)")
p.add_argument("--allow-partial", action="store_true", help="write the zip even when files are missing")
args = p.parse_args(sys.argv[2:])
xcs = args.course != "cs224n"
label = args.course if xcs else f"year {args.year}"
args.dir = args.dir or (os.path.join(root, "src", "submission") if xcs else root)
out = os.path.abspath(args.out or os.path.join(root, f"submission_{args.course}.zip" if xcs else ZIP_NAMES[args.year]))
if xcs:
    import runs  # the cohort's runs, from its variants in src/course.py
    wanted = [os.path.basename(r.output) for r in runs.assignment_runs(args.course) if r.variant]
else:
    wanted = YEARS[args.year]
arc_dir = "src/submission/" if xcs else ""  # where each output goes in the zip

# the code: everything under src/ except caches and hidden files
src = os.path.join(root, "src")
code = []
for folder, dirs, files in os.walk(src):
    # src/data/ is XCS224N's place for the real data: not code either
    dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith(".")
                     and not (folder == src and d == "data"))
    for name in sorted(files):
        if name.endswith((".pyc", ".pyo") + OUTPUT_SUFFIXES) or name.startswith("."):
            continue
        path = os.path.join(folder, name)
        code.append((path, os.path.relpath(path, root)))
if not code:
    sys.exit(f"error: no code found in {src}")

outputs, missing = [], []
for name in wanted:
    path = os.path.join(args.dir, name)
    (outputs if os.path.isfile(path) else missing).append((path, arc_dir + name))
if xcs:  # the package's own files come with src/
    missing += [(os.path.join(src, "submission", name), name) for name in XCS_CODE
                if f"src/submission/{name}" not in {arcname for _, arcname in code}]

print(f"{label}: {len(code)} files from src/, {len(outputs)} of {len(wanted)} outputs in {args.dir}")
for path, _ in missing:
    print(f"missing: {path}", file=sys.stderr)
if missing and not args.allow_partial:
    listing = f"./run.sh --course {args.course} help" if xcs else "./run.sh help"
    print(f"error: {len(missing)} file(s) missing; make them ({listing} lists the runs) or pass "
          f"--allow-partial to zip what there is", file=sys.stderr)
    sys.exit(1)

tmp = f"{out}.tmp{os.getpid()}"
try:
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for path, arcname in code + outputs:
            z.write(path, arcname)
    os.replace(tmp, out)
finally:
    if os.path.exists(tmp):
        os.remove(tmp)
print(f"wrote {out} ({len(code) + len(outputs)} files, {os.path.getsize(out) / 1e6:.1f} MB)"
      + (f"; {len(missing)} missing" if missing else ""))
PYTHON
