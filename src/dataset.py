"""
Datasets of the assignment, character level, each item (x, y): LongTensors of length block_size-1, y = x
shifted by one.

CharCorruptionDataset  span-corruption pretraining examples from a corpus, one document a line
NameDataset            "question<TAB>answer" finetuning examples; the loss sees only the answer

`python src/dataset.py charcorruption|namedata` prints a few decoded examples.
"""
import argparse
import os
import random

import torch
from torch.utils.data import Dataset

from course import CS224N, COURSES, RECIPE, get_course
from utils import UserError, parse_qa, read_text, run_script

PAD_CHAR = "\u25A1"  # "□", id 0: padding, ignored by the loss
MASK_CHAR = "\u2047"  # "⁇", id 1: marks the masked span and the end of an answer


def build_vocab(corpus):
    """(stoi, itos): PAD = 0, MASK = 1, then the sorted distinct characters of corpus."""
    for char, name in ((PAD_CHAR, "PAD"), (MASK_CHAR, "MASK")):
        if char in corpus:
            line = corpus[:corpus.index(char)].count("\n") + 1
            raise UserError(f"the pretraining corpus contains the reserved {name} character "
                            f"{char!r} (U+{ord(char):04X}) at line {line}; remove it")
    itos = [PAD_CHAR, MASK_CHAR] + sorted(set(corpus))
    return {ch: i for i, ch in enumerate(itos)}, itos


def encode(text, stoi):
    return torch.tensor([stoi[c] for c in text], dtype=torch.long)


def truncation_range(block_size, course=CS224N):
    """(shortest, longest) truncated length: [4, int(block_size*7/8)] (XCS224N: 3/4), capped so the masks fit."""
    longest = min(int(block_size * course.truncation_fraction), block_size - course.n_masks)
    return min(4, longest), longest


def masked_length_range(doc_len):
    """(low, high) of the uniform masked span length: mean doc_len/4, at least 1."""
    return 1, max(1, doc_len // 2 - 1)


class CharCorruptionDataset(Dataset):
    """Span corruption: `prefix ⁇ suffix ⁇ masked_content □□□`, learned left to right (course "xcs224n":
    `prefix ⁇ suffix ⁇ masked_content ⁇ □□□`). data: the corpus, one document per non-empty line."""

    def __init__(self, data, block_size, course=CS224N):
        self.MASK_CHAR, self.PAD_CHAR = MASK_CHAR, PAD_CHAR
        self.course = get_course(course)
        self.stoi, self.itos = build_vocab(data)
        self.vocab_size = len(self.itos)
        self.block_size = block_size
        self.data = [doc for doc in data.split("\n") if doc]
        if not self.data:
            raise UserError("the pretraining corpus is empty")
        if block_size < 6:
            raise UserError(f"block_size {block_size} is too small for span corruption (at least 6)")

    def __len__(self):
        return len(self.data)

    def corrupt(self, document, rng=random):
        """The corrupted string s (length block_size) for one document."""
        document = document[:rng.randint(*truncation_range(self.block_size, self.course))]
        n = len(document)
        masked_len = rng.randint(*masked_length_range(n)) if n > 1 else n
        p = rng.randint(0, n - masked_len)  # the prefix length
        prefix, masked_content, suffix = document[:p], document[p:p + masked_len], document[p + masked_len:]
        s = prefix + MASK_CHAR + suffix + MASK_CHAR + masked_content
        s += MASK_CHAR if self.course.mask_after_content else ""
        return s + PAD_CHAR * (self.block_size - len(s))

    def __getitem__(self, idx):
        ids = encode(self.corrupt(self.data[idx]), self.stoi)
        return ids[:-1], ids[1:]


class NameDataset(Dataset):
    """Birthplace finetuning: x = `question ⁇ answer ⁇ □□□`[:-1], y = the same shifted, with PAD over the
    question so the loss is on the answer only. Shares the pretraining dataset's vocabulary and block size."""

    def __init__(self, pretraining_dataset, data, source="finetuning data"):
        self.MASK_CHAR, self.PAD_CHAR = MASK_CHAR, PAD_CHAR
        self.itos = pretraining_dataset.itos
        self.stoi = pretraining_dataset.stoi
        self.vocab_size = len(self.itos)
        self.block_size = pretraining_dataset.block_size
        rows = parse_qa(data, source, answers=True)
        if not rows:
            raise UserError(f"{source} has no question<TAB>answer lines")
        for number, question, answer in rows:
            unknown = sorted(set(question + answer) - set(self.stoi))
            if unknown:
                raise UserError(f"{source} line {number} has characters that are not in the pretraining "
                                f"corpus vocabulary: {''.join(unknown)!r}")
            if len(question) + len(answer) + 2 > self.block_size:
                raise UserError(f"{source} line {number} is too long: question + answer + 2 masks is "
                                f"{len(question) + len(answer) + 2} characters, the block size is {self.block_size}")
        self.data = [(question, answer) for _, question, answer in rows]

    def __len__(self):
        return len(self.data)

    def __getitem__(self, idx):
        question, answer = self.data[idx]
        full = question + MASK_CHAR + answer + MASK_CHAR
        full += PAD_CHAR * (self.block_size - len(full))
        return encode(full[:-1], self.stoi), encode(PAD_CHAR * (len(question) - 1) + full[len(question):], self.stoi)


def find_data_file(name):
    """The first of name, data/name, data/synthetic/name in the cwd or the repo, or src/data/name (XCS224N's)."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for folder in (".", "data", os.path.join("data", "synthetic"), repo, os.path.join(repo, "data"),
                   os.path.join(repo, "data", "synthetic"), os.path.join(repo, "src", "data")):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    raise UserError(f"{name} not found in ., data/ or data/synthetic/ (see data/README.md for the real "
                    f"files, or run `python data/make_synthetic_corpus.py` for the synthetic corpus)")


def main(course="cs224n"):
    parser = argparse.ArgumentParser(description="Print a few decoded examples of a dataset.")
    parser.add_argument("dataset_type", choices=["namedata", "charcorruption"])
    parser.add_argument("--course", choices=list(COURSES), default=course, help="span corruption of this course")
    parser.add_argument("--corpus_path", default=None, help="pretraining corpus (default: wiki.txt)")
    parser.add_argument("--finetune_corpus_path", default=None,
                        help="question<TAB>answer file for namedata (default: birth_places_train.tsv)")
    parser.add_argument("--block_size", type=int, default=RECIPE.block_size)
    parser.add_argument("--examples", type=int, default=4)
    args = parser.parse_args()
    corpus = read_text(args.corpus_path or find_data_file("wiki.txt"), "pretraining corpus")
    dataset = CharCorruptionDataset(corpus, args.block_size, args.course)
    if args.dataset_type == "namedata":
        path = args.finetune_corpus_path or find_data_file("birth_places_train.tsv")
        dataset = NameDataset(dataset, read_text(path, "finetuning corpus"), source=path)
    print(f"{args.dataset_type}: {len(dataset)} examples, vocabulary of {dataset.vocab_size}")
    for idx in range(min(args.examples, len(dataset))):
        x, y = dataset[idx]
        print("x:", "".join(dataset.itos[int(i)] for i in x))
        print("y:", "".join(dataset.itos[int(i)] for i in y))


if __name__ == "__main__":
    run_script(main)
