"""
Accuracy of always answering the same place: "London" on the dev set by default (the assignment's
baseline), or the most common answer of a training file.

    python src/london_baseline.py            # -> london_baseline_accuracy.txt
    python src/london_baseline.py --most_common_from birth_places_train.tsv
"""
import argparse
import json
from collections import Counter

from dataset import find_data_file
from utils import UserError, atomic_write_text, count_correct, read_qa, run_script


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.strip().split("\n")[0])
    p.add_argument("--eval_corpus_path", default=None, help="default: birth_dev.tsv (., data/ or data/synthetic/)")
    p.add_argument("--place", default="London")
    p.add_argument("--most_common_from", default=None, metavar="TSV",
                   help="answer the most common place of this question<TAB>answer file instead")
    p.add_argument("--outputs_path", default="london_baseline_accuracy.txt")
    args = p.parse_args(argv)
    path = args.eval_corpus_path or find_data_file("birth_dev.tsv")
    place = args.place
    if args.most_common_from:
        answers = [a for _, _, a in read_qa(args.most_common_from, "training file", answers=True)]
        if not answers:
            raise UserError(f"{args.most_common_from} has no question<TAB>answer lines")
        place = Counter(answers).most_common(1)[0][0]
    rows = read_qa(path, "evaluation corpus")
    total, correct = count_correct(rows, [place] * len(rows), path)
    if total == 0:
        raise UserError(f"{path} has no answers to compare with")
    accuracy = 100.0 * correct / total
    atomic_write_text(args.outputs_path, f"{accuracy}\n")
    atomic_write_text(args.outputs_path + ".json", json.dumps({  # the figures for report.py
        "function": "baseline", "place": place, "eval_corpus": path, "correct": correct, "total": total,
        "percent": accuracy}) + "\n")
    print(f"Always answering {place!r} on {path}: Correct: {correct} out of {total}: {accuracy}%")
    print(f"accuracy written to {args.outputs_path}")


if __name__ == "__main__":
    run_script(main)
