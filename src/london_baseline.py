"""
Accuracy of always answering the same place: "London" on the dev set by default
(the assignment's baseline), or the most common answer of a training file.

    python src/london_baseline.py            # -> london_baseline_accuracy.txt
    python src/london_baseline.py --most_common_from birth_places_train.tsv
"""
import argparse
import sys
from collections import Counter

from dataset import find_data_file, parse_qa_lines
from utils import UserError, atomic_write_text, evaluate_places, read_lines, read_text


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
        answers = [a for _, a in parse_qa_lines(read_text(args.most_common_from).split("\n"),
                                                  args.most_common_from)]
        place = Counter(answers).most_common(1)[0][0]
    n_questions = len(read_lines(path, "evaluation corpus"))
    total, correct = evaluate_places(path, [place] * n_questions)
    if total == 0:
        raise UserError(f"{path} has no answers to compare with")
    accuracy = 100.0 * correct / total
    atomic_write_text(args.outputs_path, f"{accuracy}\n")
    print(f"Always answering {place!r} on {path}: Correct: {correct} out of {total}: {accuracy}%")
    print(f"accuracy written to {args.outputs_path}")


if __name__ == "__main__":
    try:
        main()
    except UserError as e:
        sys.exit(f"error: {e}")
