"""
Results of the runs: a markdown table, JSON and loss plots, from what the runs record.

    python tools/report.py [--course C] [--logs results/logs] [--demos results] [--runs expt] [--out results]
    ./run.sh report                        # the same, with run.sh's RESULTS_DIR and --course

Reads run.sh's record of each run (LOG.json: command, output, exit status) and the one the run wrote beside its
output (OUTPUT.json: variant, model, device, time, accuracy), for the assignment's runs (src/runs.py's table,
LOGS/TARGET.json) and each demo (DEMOS/demo-*/logs/STEP.json), and the TensorBoard files under expt/ (train/loss,
train/lr). Writes OUT/README.md, OUT/results.json and OUT/loss_PHASE.png; missing or failed runs show as '—'.
"""
import argparse
import datetime
import glob
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "src"))  # the library

import runs as pipeline
from utils import atomic_write_text

DASH = "—"
# the figures of a run that read_run takes from the record its command wrote
FIGURES = ("device", "dtype", "variant", "parameters", "correct", "total", "percent", "place", "predictions", "corpus")


def read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, TypeError, ValueError):  # not written: the run failed, or it is older than these records
        return None


def read_run(path):
    """One run from run.sh's record of it (LOG.json) and the record its command wrote beside its output."""
    log, status = path[:-len(".json")] + ".log", read_json(path) or {}
    found = read_json(status["output"] + ".json" if status.get("output") else None) or {}
    return {"log": log, **{key: found.get(key) for key in FIGURES},
            "error": f"exit status {status['exit_status']} (see {log})" if status.get("exit_status") else None,
            "bottleneck_dim": (found.get("model") or {}).get("bottleneck_dim"),
            "seconds": found.get("seconds") if found.get("function") in ("pretrain", "finetune") else None}


# ---------------------------------------------------------------- the runs of run.sh and of the demo

def assignment_runs(course=pipeline.CS224N):
    """[(variant, pretrained, {step: target})] for the runs of ./run.sh TARGET (src/runs.py)."""
    grouped = {}
    for run in pipeline.assignment_runs(course):
        if run.variant is not None:
            grouped.setdefault((run.variant, run.pretrained), {})[run.step] = run.name
    return [(variant, pretrained, steps) for (variant, pretrained), steps in grouped.items()]


def demo_runs(logs):
    """The same for one ./run.sh demo, whose logs are named by step, not by variant."""
    variant = next((info["variant"] for info in logs.values() if info["variant"]), "vanilla")
    return [(variant, False, {"finetune": "finetune_without_pretrain", "dev": "eval_without_pretrain"}),
            (variant, True, {"pretrain": "pretrain", "finetune": "finetune_with_pretrain",
                             "dev": "eval_with_pretrain"})]


def read_logs(logs_dir):
    """{run name: read_run(...)} for the runs recorded in logs_dir (NAME.json beside NAME.log)."""
    return {os.path.basename(p)[:-len(".json")]: read_run(p)
            for p in sorted(glob.glob(os.path.join(logs_dir, "*.json")))}


def accuracy(info):
    return {key: info[key] for key in ("correct", "total", "percent")} if info and info.get("total") else None


def summarize(runs, logs):
    """One dict per run from the logs of its steps; missing pieces are None."""
    rows = []
    for variant, pretrained, steps in runs:
        found = {step: logs.get(log) for step, log in steps.items()}
        got = {step: found.get(step) or {} for step in ("pretrain", "finetune", "dev", "test")}  # {}: no log
        row = {"run": f"{variant}, pretrained" if pretrained else f"{variant}, no pretraining",
               "variant": variant, "pretrained": pretrained,
               "logs": {step: log for step, log in steps.items() if found[step]},
               "missing": [log for step, log in steps.items() if not found[step]],
               "errors": {steps[step]: info["error"] for step, info in found.items() if info and info["error"]},
               "dev": accuracy(got["dev"]), "test": accuracy(got["test"]),
               "test_predictions": got["test"].get("predictions"), "parameters": None,
               "pretrain_s": got["pretrain"].get("seconds"), "finetune_s": got["finetune"].get("seconds")}
        # the first step that says (training before evaluation) gives where and what ran
        for key in ("parameters", "device", "dtype", "bottleneck_dim", "corpus"):
            row[key] = next((got[s][key] for s in ("finetune", "pretrain", "dev", "test")
                             if got[s].get(key) is not None), None)
        row["status"] = ("failed" if row["errors"] else "not run" if not any(found.values())
                         else "complete" if not row["missing"] else "partial")
        rows.append(row)
    return rows


def baseline(logs, name):
    info = logs.get(name)
    return info and {"place": info["place"], "accuracy": accuracy(info), "error": info["error"], "log": info["log"]}


# ---------------------------------------------------------------- TensorBoard curves

def event_runs(runs_dir):
    """{phase: [(label, event file)]}: one entry per event file under runs_dir/PHASE/NAME/. A directory
    gets one file per training run that used the same name (finetuning with and without pretraining):
    each is a line of its own, numbered by age."""
    found, by_dir = {}, {}
    for f in glob.glob(os.path.join(runs_dir, "**", "events.out.tfevents.*"), recursive=True):
        by_dir.setdefault(os.path.dirname(f), []).append(f)
    for d, fs in sorted(by_dir.items()):
        parts = os.path.relpath(d, runs_dir).split(os.sep)
        phase, name = (parts[0], os.sep.join(parts[1:])) if len(parts) > 1 else ("training", parts[0])
        fs.sort(key=lambda f: (os.path.getmtime(f), f))
        found.setdefault(phase, []).extend((name if len(fs) == 1 else f"{name} #{i}", f) for i, f in enumerate(fs, 1))
    return found


def read_scalars(path):
    """{tag: ([steps], [values])} of train/loss and train/lr in one event file; {} when it cannot be read."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
        acc = EventAccumulator(path, size_guidance={"scalars": 0})
        acc.Reload()
        return {tag: ([e.step for e in acc.Scalars(tag)], [e.value for e in acc.Scalars(tag)])
                for tag in ("train/loss", "train/lr") if tag in acc.Tags().get("scalars", [])}
    except Exception as e:  # a truncated or foreign file: skip it, say so
        print(f"warning: cannot read {path}: {e}", file=sys.stderr)
        return {}


def plot_curves(runs_dir, out_dir):
    """loss_PHASE.png per phase under runs_dir; returns [{phase, png, runs}]."""
    curves = {phase: [(label, s) for label, s in ((label, read_scalars(f)) for label, f in entries)
                      if "train/loss" in s] for phase, entries in event_runs(runs_dir).items()}
    curves = {phase: entries for phase, entries in sorted(curves.items()) if entries}
    if not curves:
        return []
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        print(f"warning: no plots: {e}", file=sys.stderr)
        return []
    plots = []
    for phase, entries in curves.items():
        fig, (ax_loss, ax_lr) = plt.subplots(2, 1, figsize=(9, 7), sharex=True,
                                             gridspec_kw={"height_ratios": [3, 1]})
        for label, scalars in entries:
            (line,) = ax_loss.plot(*scalars["train/loss"], label=label, linewidth=1)
            if "train/lr" in scalars:
                ax_lr.plot(*scalars["train/lr"], color=line.get_color(), linewidth=1)
        ax_loss.set(title=f"{phase}: training loss", ylabel="train/loss")
        ax_loss.legend(fontsize=7)
        ax_lr.set(xlabel="step", ylabel="train/lr")
        for ax in (ax_loss, ax_lr):
            ax.grid(alpha=0.3)
        fig.tight_layout()
        png = os.path.join(out_dir, f"loss_{phase}.png")
        fig.savefig(png, dpi=100)
        plt.close(fig)
        plots.append({"phase": phase, "png": png, "runs": [label for label, _ in entries]})
    return plots


# ---------------------------------------------------------------- writing it out

def fmt_accuracy(acc):
    return f"{acc['percent']:.1f}% ({acc['correct']}/{acc['total']})" if acc else DASH


def fmt_seconds(s):
    return DASH if s is None else f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


def table(rows, with_test=True):
    """The markdown lines of a table of runs, '—' for what is missing."""
    head = ["run", "dev accuracy"] + (["test predictions"] if with_test else []) + \
           ["parameters", "pretrain time", "finetune time", "device", "status"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        name = r["run"] + (f" (bottleneck {r['bottleneck_dim']})" if r["bottleneck_dim"] else "")
        test = fmt_accuracy(r["test"]) if r["test"] else "written" if r["test_predictions"] else DASH
        device = f"{r['device']} ({r['dtype']})" if r["device"] and r["dtype"] else r["device"] or DASH
        status = r["status"] + (" (see " + ", ".join(sorted(r["errors"])) + ")" if r["errors"] else "")
        cells = [name, fmt_accuracy(r["dev"])] + ([test] if with_test else []) + \
                [f"{r['parameters']:,}" if r["parameters"] else DASH,
                 fmt_seconds(r["pretrain_s"]) if r["pretrained"] else "n/a",
                 fmt_seconds(r["finetune_s"]), device, status]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def baseline_line(b, what):
    if not b:
        return f"{what}: {DASH} (no log)"
    place = f"always {b['place']!r}" if b["place"] else "constant answer"
    result = fmt_accuracy(b["accuracy"]) if b["accuracy"] else DASH + (f" ({b['error']})" if b["error"] else "")
    return f"{what} ({place}): {result}"


def markdown(report, out_dir):
    lines = ["# Results", "", f"Generated {report['generated']} by `tools/report.py` from the logs in "
             f"`{report['logs_dir']}` and `{report['demos_dir']}/demo-*/logs` and the TensorBoard runs in "
             f"`{report['runs_dir']}`.", ""]
    a, demos = report["assignment"], report["demo"]
    if a:
        lines += ["## The assignment's runs (`./run.sh TARGET`)", "", *table(a["runs"]), "",
                  baseline_line(a["london_baseline"], "London baseline on the dev set")]
        corpora = sorted({r["corpus"] for r in a["runs"] if r["corpus"]})
        if corpora:
            lines += ["", "Pretraining corpus: " + ", ".join(f"`{c}`" for c in corpora)]
        lines += [""]
    if demos:
        lines += ["## The demos (`./run.sh demo [VARIANT] [OPTIONS]`, synthetic corpus, small model)", ""]
        for name, d in demos.items():
            lines += [f"### {name}", "", f"Logs: `{d['logs_dir']}`", "", *table(d["runs"], with_test=False), "",
                      baseline_line(d["baseline"], "Most common place baseline on the dev set"), ""]
    if not a and not demos:
        lines += [f"No run logs found in `{report['logs_dir']}` or `{report['demos_dir']}/demo-*/logs`: run "
                  f"`./run.sh TARGET`, `./run.sh all` or `./run.sh demo` first.", ""]
    lines += ["## Training loss", ""]
    for p in report["plots"]:
        lines += [f"![{p['phase']} loss]({os.path.relpath(p['png'], out_dir)})", ""]
    if not report["plots"]:
        lines += [f"{DASH} (no TensorBoard event files with train/loss under `{report['runs_dir']}`)", ""]
    lines += ["Missing or failed pieces show as '—'; `status` says which logs are missing or failed "
              "(results.json lists them).", ""]
    return "\n".join(lines)


def build_report(logs_dir, runs_dir, out_dir, demos_dir, course=pipeline.CS224N):
    """What results.json holds; writes the loss plots into out_dir."""
    logs = read_logs(logs_dir)
    table = assignment_runs(course)
    known = {log for *_, steps in table for log in steps.values()} | {"london_baseline"}
    assignment = {"runs": summarize(table, logs), "london_baseline": baseline(logs, "london_baseline")}
    demos = {}  # one per DEMOS/demo-*/logs/ that holds logs, named by its directory (demo-vanilla-shared_qk)
    for d in sorted(glob.glob(os.path.join(demos_dir, "demo-*", "logs")), key=os.path.dirname):
        if found := read_logs(d):
            demos[os.path.basename(os.path.dirname(d))] = {"logs_dir": d, "runs": summarize(demo_runs(found), found),
                                                           "baseline": baseline(found, "baseline")}
    return {"generated": datetime.datetime.now().isoformat(timespec="seconds"), "logs_dir": logs_dir,
            "demos_dir": demos_dir, "runs_dir": runs_dir, "assignment": assignment if known & set(logs) else None,
            "demo": demos or None, "other_logs": sorted(set(logs) - known), "plots": plot_curves(runs_dir, out_dir)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.strip().split("\n")[0])
    p.add_argument("--course", choices=list(pipeline.COURSES), default=pipeline.CS224N.name, help="whose runs")
    p.add_argument("--logs", default=os.path.join("results", "logs"), help="run.sh's logs and records")
    p.add_argument("--demos", help="where the demo-*/logs/ of ./run.sh demo are (default: the parent of --logs)")
    p.add_argument("--runs", default="expt", help="TensorBoard runs: PHASE/NAME/events.* (default expt)")
    p.add_argument("--out", default="results", help="where README.md, results.json and the PNGs go")
    p.add_argument("--accuracy", nargs="+", metavar="JSON", help="only print each results JSON's accuracy, or '—'")
    args = p.parse_args(argv)
    if args.accuracy:
        for path in args.accuracy:
            try:
                print(fmt_accuracy(accuracy(read_json(path))))
            except KeyError:  # a record without all of correct, total and percent
                print(DASH)
        return None
    demos = args.demos or os.path.normpath(os.path.join(args.logs, os.pardir))
    os.makedirs(args.out, exist_ok=True)
    report = build_report(args.logs, args.runs, args.out, demos, args.course)
    readme, js = os.path.join(args.out, "README.md"), os.path.join(args.out, "results.json")
    atomic_write_text(readme, markdown(report, args.out))
    atomic_write_text(js, json.dumps(report, indent=2) + "\n")
    print(f"wrote {readme}, {js}" + "".join(f", {p['png']}" for p in report["plots"]))
    return report


if __name__ == "__main__":
    main()
