"""
Demos side by side, as a table, JSON and a bar chart: the demos of one variant at 1 and at 3 wiki
lines per person (`./run.sh demo-augmentation`), or the four variants' demos (`./run.sh demo-variants`).

    python tools/demo_report.py results/demo-augmentation/bios1 results/demo-augmentation/bios3 \
        --by bios_per_person --out results/demo-augmentation --name augmentation
    python tools/demo_report.py results/demo-vanilla results/demo-rope ... --by variant \
        --out results/demo-variants --name variants

Each demo directory holds what `./run.sh demo` writes: corpus.json (the generator's description
of the corpus it ran on), baseline_accuracy.txt, the evaluation results that run.py writes
beside the predictions (nopretrain.dev.predictions.json, pretrain.dev.predictions.json, with the
run's variant and options), probe_recall.json and seconds.txt: structured files, nothing is read
from printed text. Writes OUT/NAME.{json,md,png}.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "src"))  # the library

from utils import UserError, atomic_write_text, read_text, run_script

# (key in the results, column heading)
COLUMNS = [("baseline", "most common place"), ("no_pretraining", "no pretraining"),
           ("pretrained", "pretrained + finetuned"), ("own line", "recall: own line"),
           ("name at line start", "recall: name at line start"),
           ("name after other words", "recall: name after other words")]
DASH = "—"


def read_demo(directory):
    """{bios_per_person, people, seed, dev questions, and each COLUMNS key: percent} of one demo."""
    def path(name):
        full = os.path.join(directory, name)
        if not os.path.isfile(full):
            raise UserError(f"{directory} has no {name}: run the demo into it first")
        return full

    def read_json(name, what):
        return json.loads(read_text(path(name), what))

    corpus = read_json("corpus.json", "demo corpus description")
    scratch = read_json("nopretrain.dev.predictions.json", "evaluation results")
    pretrained = read_json("pretrain.dev.predictions.json", "evaluation results")
    probe = read_json("probe_recall.json", "probe results")
    seconds = os.path.join(directory, "seconds.txt")
    row = {"directory": directory, "variant": pretrained["variant"], "bios_per_person": corpus["bios_per_person"],
           "people": corpus["people"], "seconds": int(read_text(seconds, "demo time")) if os.path.isfile(seconds) else None,
           "seed": corpus["seed"], "dev_questions": pretrained["total"],
           "baseline": float(read_text(path("baseline_accuracy.txt"), "baseline accuracy")),
           "no_pretraining": scratch["percent"], "pretrained": pretrained["percent"]}
    for shape in ("own line", "name at line start", "name after other words"):
        recalled, probed = probe[shape]
        row[shape] = 100.0 * recalled / probed if probed else None
    return row


# what tells the demos of a report apart: (row key, heading of the first column, label in the chart)
BY = {"bios_per_person": ("wiki lines per person", "{} wiki line(s) per person"), "variant": ("variant", "{}")}


def markdown(rows, by):
    head = f"| {BY[by][0]} | " + " | ".join(title for _, title in COLUMNS) + " | wall time |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for row in rows:
        cells = [DASH if row[key] is None else f"{row[key]:.1f}%" for key, _ in COLUMNS]
        seconds = DASH if row["seconds"] is None else f"{row['seconds']} s"
        lines.append(f"| {row[by]} | " + " | ".join(cells) + f" | {seconds} |")
    return "\n".join(lines) + "\n"


def plot(rows, by, title, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(rows)
    for i, row in enumerate(rows):
        values = [row[key] or 0.0 for key, _ in COLUMNS]
        ax.bar([c + (i - (len(rows) - 1) / 2) * width for c in range(len(COLUMNS))], values, width,
               label=BY[by][1].format(row[by]))
    ax.set_xticks(range(len(COLUMNS)), [title.replace(": ", ":\n").replace(" + ", " +\n") for _, title in COLUMNS],
                  fontsize=8)
    ax.set_ylabel("% of dev people")
    ax.set_ylim(0, 100)
    ax.set_title(f"{title}, {rows[0]['people']} people, {rows[0]['dev_questions']} dev questions, seed {rows[0]['seed']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.strip().split("\n")[0])
    p.add_argument("demos", nargs="+", help="demo output directories")
    p.add_argument("--by", choices=BY, default="bios_per_person", help="what tells the demos apart")
    p.add_argument("--out", required=True, help="directory for NAME.json, .md and .png")
    p.add_argument("--name", default="augmentation", help="file name of the outputs, without extension")
    args = p.parse_args(argv)
    rows = [read_demo(d) for d in args.demos]
    if args.by == "bios_per_person":
        rows.sort(key=lambda r: r["bios_per_person"])
    out = os.path.join(args.out, args.name)
    os.makedirs(args.out, exist_ok=True)
    atomic_write_text(out + ".json", json.dumps(rows, indent=1) + "\n")
    table = markdown(rows, args.by)
    atomic_write_text(out + ".md", table)
    title = "Knowledge augmentation" if args.by == "bios_per_person" else "Every variant's demo"
    plot(rows, args.by, title, out + ".png")
    print(table, end="")
    print(f"written to {out}.json, .md and .png")


if __name__ == "__main__":
    run_script(main)
