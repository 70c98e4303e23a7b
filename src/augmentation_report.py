"""
The knowledge-augmentation effect side by side: demos of one variant that differ only in wiki
lines per person (`./run.sh demo-augmentation`), as a table, JSON and a bar chart.

    python src/augmentation_report.py results/demo-augmentation/bios1 results/demo-augmentation/bios3 \
        --out results/demo-augmentation

Each demo directory holds what `./run.sh demo` writes: corpus.json (the generator's description
of the corpus it ran on), baseline_accuracy.txt, the evaluation results that run.py writes
beside the predictions (nopretrain.dev.predictions.json, pretrain.dev.predictions.json) and
probe_recall.json: structured files, nothing is read from printed text. Writes OUT/augmentation.{json,md,png}.
"""
import argparse
import json
import os

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
    row = {"directory": directory, "bios_per_person": corpus["bios_per_person"], "people": corpus["people"],
           "seed": corpus["seed"], "dev_questions": pretrained["total"],
           "baseline": float(read_text(path("baseline_accuracy.txt"), "baseline accuracy")),
           "no_pretraining": scratch["percent"], "pretrained": pretrained["percent"]}
    for shape in ("own line", "name at line start", "name after other words"):
        recalled, probed = probe[shape]
        row[shape] = 100.0 * recalled / probed if probed else None
    return row


def markdown(rows):
    head = "| wiki lines per person | " + " | ".join(title for _, title in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    for row in rows:
        cells = [DASH if row[key] is None else f"{row[key]:.1f}%" for key, _ in COLUMNS]
        lines.append(f"| {row['bios_per_person']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(rows)
    for i, row in enumerate(rows):
        values = [row[key] or 0.0 for key, _ in COLUMNS]
        ax.bar([c + (i - (len(rows) - 1) / 2) * width for c in range(len(COLUMNS))], values, width,
               label=f"{row['bios_per_person']} wiki line(s) per person")
    ax.set_xticks(range(len(COLUMNS)), [title.replace(": ", ":\n").replace(" + ", " +\n") for _, title in COLUMNS],
                  fontsize=8)
    ax.set_ylabel("% of dev people")
    ax.set_ylim(0, 100)
    ax.set_title(f"Knowledge augmentation, {rows[0]['people']} people, {rows[0]['dev_questions']} dev questions")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.strip().split("\n")[0])
    p.add_argument("demos", nargs="+", help="demo output directories")
    p.add_argument("--out", required=True, help="directory for augmentation.json, .md and .png")
    args = p.parse_args(argv)
    rows = sorted((read_demo(d) for d in args.demos), key=lambda r: r["bios_per_person"])
    os.makedirs(args.out, exist_ok=True)
    atomic_write_text(os.path.join(args.out, "augmentation.json"), json.dumps(rows, indent=1) + "\n")
    table = markdown(rows)
    atomic_write_text(os.path.join(args.out, "augmentation.md"), table)
    plot(rows, os.path.join(args.out, "augmentation.png"))
    print(table, end="")
    print(f"written to {args.out}/augmentation.json, .md and .png")


if __name__ == "__main__":
    run_script(main)
