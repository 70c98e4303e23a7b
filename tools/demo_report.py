"""
Demos side by side, as a table, JSON and a bar chart: one variant's demos at 1 and at 3 wiki lines per person
(`./run.sh demo-augmentation`), or every variant's demo (`./run.sh demo-variants`).

    python tools/demo_report.py DEMO_DIR... --by bios_per_person|variant --out OUT --name NAME

Reads the files `./run.sh demo` writes into each demo directory, never printed text: corpus.json,
baseline_accuracy.txt, {nopretrain,pretrain}.dev.predictions.json, probe_recall.json and seconds.txt.
Writes OUT/NAME.{json,md,png}.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "src"))  # the library

from utils import UserError, atomic_write_text, read_text, run_script

SHAPES = ("own line", "name at line start", "name after other words")  # probe_recall's prompt shapes
# (key in the results, column heading)
COLUMNS = [("baseline", "most common place"), ("no_pretraining", "no pretraining"),
           ("pretrained", "pretrained + finetuned")] + [(shape, f"recall: {shape}") for shape in SHAPES]
DASH = "—"


def read_demo(directory):
    """{directory, variant, bios_per_person, people, seconds, seed, dev_questions, and each COLUMNS key: percent}."""
    def read(name, what):
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            raise UserError(f"{directory} has no {name}: run the demo into it first")
        return read_text(path, what)

    corpus, scratch, pretrained, probe = (json.loads(read(name, what)) for name, what in (
        ("corpus.json", "demo corpus description"), ("nopretrain.dev.predictions.json", "evaluation results"),
        ("pretrain.dev.predictions.json", "evaluation results"), ("probe_recall.json", "probe results")))
    timed = os.path.isfile(os.path.join(directory, "seconds.txt"))
    row = {"directory": directory, "variant": pretrained["variant"], "bios_per_person": corpus["bios_per_person"],
           "people": corpus["people"], "seconds": int(read("seconds.txt", "demo time")) if timed else None,
           "seed": corpus["seed"], "dev_questions": pretrained["total"],
           "baseline": float(read("baseline_accuracy.txt", "baseline accuracy")),
           "no_pretraining": scratch["percent"], "pretrained": pretrained["percent"]}
    for shape in SHAPES:
        recalled, probed = probe[shape]
        row[shape] = 100.0 * recalled / probed if probed else None
    return row


# what tells the demos apart: {row key: (heading of the first column, label in the chart, the chart's title)}
BY = {"bios_per_person": ("wiki lines per person", "{} wiki line(s) per person", "Knowledge augmentation"),
      "variant": ("variant", "{}", "Every variant's demo")}


def markdown(rows, by):
    head = f"| {BY[by][0]} | " + " | ".join(title for _, title in COLUMNS) + " | wall time |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for row in rows:
        cells = [DASH if row[key] is None else f"{row[key]:.1f}%" for key, _ in COLUMNS]
        seconds = DASH if row["seconds"] is None else f"{row['seconds']} s"
        lines.append(f"| {row[by]} | " + " | ".join(cells) + f" | {seconds} |")
    return "\n".join(lines) + "\n"


def plot(rows, by, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(rows)
    for i, row in enumerate(rows):
        ax.bar([c + (i - (len(rows) - 1) / 2) * width for c in range(len(COLUMNS))],
               [row[key] or 0.0 for key, _ in COLUMNS], width, label=BY[by][1].format(row[by]))
    ax.set_xticks(range(len(COLUMNS)), [t.replace(": ", ":\n").replace(" + ", " +\n") for _, t in COLUMNS], fontsize=8)
    first = rows[0]
    ax.set(ylabel="% of dev people", ylim=(0, 100), title=f"{BY[by][2]}, {first['people']} people, "
           f"{first['dev_questions']} dev questions, seed {first['seed']}")
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
    plot(rows, args.by, out + ".png")
    print(f"{table}written to {out}.json, .md and .png")


if __name__ == "__main__":
    run_script(main)
