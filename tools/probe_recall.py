"""
Probe whether a params file knows the birth places, and from which contexts it recalls them: for the first
--people people of the question files, greedily continue four prompt shapes and count a person as recalled
when the continuation is their birth place. The model is built from the description run.py saves in the
params file, the vocabulary from the wiki corpus, as in run.py.

    python tools/probe_recall.py vanilla.pretrain.params wiki.txt birth_dev.tsv [--people 200]
"""
import os
import argparse
import json
import sys
from collections import Counter

from tqdm import tqdm

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "src"))  # the library

from dataset import build_vocab, truncation_range
from decoding import encode_question, greedy_by_length, predict_places
from params import load_model
from utils import UserError, atomic_write_text, read_qa, read_text, resolve_device, run_script

QUESTION_START, QUESTION_END = "Where was ", " born?"
QUESTION_SHAPE = "finetuning question"  # scored apart from the other prompts, as evaluation scores it


def own_line_prompt(line, name, place, max_len):
    """name's wiki line ("Name. ...") up to its first mention of place after the name, or None when
    the place does not end within max_len characters (pretraining never shows text beyond them)."""
    # after the name: Florence Nightingale's name is no mention of Florence
    start = line.find(place, len(name) + 2) if line.startswith(name + ". ") else -1
    return line[:start] if start >= 0 and start + len(place) <= max_len else None


def says_place(continuation, place):
    """The continuation starts with the place as a whole word ("Paris", not "Parisville")."""
    return continuation.startswith(place) and not continuation[len(place):len(place) + 1].isalnum()


def recall_counts(model, prompts, places, stoi, itos, device, progress=False, desc=None, question=False):
    """(recalled, probed) over the prompts that are not None, all of whose characters the vocabulary has, and
    that leave room for the place in the model's context. A prompt recalls its place when its greedy continuation
    starts with the place as a whole word; with question=True, when its answer (up to ⁇) is the place."""
    prompt_length = (lambda q: len(encode_question(q, stoi)[0])) if question else len
    probed = [(prompt, place) for prompt, place in zip(prompts, places) if prompt is not None
              and set(prompt) <= stoi.keys() and prompt_length(prompt) + len(place) + 1 <= model.max_len]
    if not probed:
        return 0, 0
    prompts, places = zip(*probed)
    if question:
        answers = predict_places(model, prompts, stoi, itos, device, progress=progress)
        return sum(answer == place for answer, place in zip(answers, places)), len(probed)
    n_chars = max(len(place) for place in places) + 1  # one more, to see where the word ends
    bar = tqdm(total=len(prompts), desc=desc, disable=not progress, mininterval=1, leave=False)
    # mask_id -1 never comes out: a ⁇ must not stop the decoding of the others early
    generated = greedy_by_length(model, [[stoi[c] for c in p] for p in prompts], n_chars, -1, device, bar=bar)
    bar.close()
    return sum(says_place("".join(itos[j] for j in row), place) for row, place in zip(generated, places)), len(probed)


def read_people(paths, n_people):
    """[(question, name, place)] of the first n_people lines of the question files, in order."""
    people = []
    for path in paths:
        for _, question, place in read_qa(path, "question file", answers=True):
            if not (question.startswith(QUESTION_START) and question.endswith(QUESTION_END)):
                raise UserError(f"{path}: {question[:60]!r} is not of the form 'Where was NAME born?'")
            people.append((question, question[len(QUESTION_START):-len(QUESTION_END)], place))
    return people[:n_people]


def probe(model, people, wiki_lines, stoi, itos, device, progress=False):
    """{label: (recalled, probed)} for every prompt shape."""
    model.eval()
    questions, names, places = zip(*people)
    lines = [next((line for line in wiki_lines if line.startswith(name + ". ")), None) for name in names]  # own lines
    longest_document = truncation_range(model.block_size)[1]
    shapes = {"own line": [line and own_line_prompt(line, name, place, longest_document)
                           for name, place, line in zip(names, places, lines)],
              "name at line start": [f"{name}. {name} was born in " for name in names],
              "name after other words": [f"The painter {name} was born in " for name in names]}
    counts = {label: recall_counts(model, prompts, places, stoi, itos, device, progress, desc=label)
              for label, prompts in shapes.items()}
    counts[QUESTION_SHAPE] = recall_counts(model, questions, places, stoi, itos, device, progress, question=True)
    return counts


def percent(recalled, probed):
    return f"{100.0 * recalled / probed:5.1f}%" if probed else "    -"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.strip().split("\n")[0])
    p.add_argument("params_path")
    p.add_argument("wiki_path", help="the pretraining corpus; its characters are the vocabulary")
    p.add_argument("qa_paths", nargs="+", metavar="qa_tsv", help="question<TAB>place files")
    p.add_argument("--people", type=int, default=200, help="probe the first N people of the files (default 200)")
    p.add_argument("--device", default="auto", help="auto (CUDA, else MPS, else CPU), cpu, cuda, mps")
    p.add_argument("--json_path", default=None, help="also write {prompt shape: [recalled, probed]} here")
    args = p.parse_args(argv)
    if args.people < 1:
        p.error(f"--people must be at least 1, got {args.people}")
    corpus = read_text(args.wiki_path, "wiki corpus")
    stoi, itos = build_vocab(corpus)
    device = resolve_device(args.device)
    model = load_model(args.params_path, itos).to(device).eval()
    people = read_people(args.qa_paths, args.people)
    c = model.config
    print(f"{args.params_path}: {c.variant}, {c.n_layer} layers, {c.n_head} heads, {c.n_embd} dims, block size "
          f"{c.block_size}, {sum(q.numel() for q in model.parameters()):,} parameters; {len(people)} people")
    counts = probe(model, people, corpus.split("\n"), stoi, itos, device, progress=sys.stderr.isatty())
    width = max(len(label) for label in counts)
    print(f"{'prompt shape':<{width}}  {'recalled':>9}  {'rate':>6}")
    for label, (recalled, probed) in counts.items():
        print(f"{label:<{width}}  {f'{recalled}/{probed}':>9}  {percent(recalled, probed):>6}")
    place, n = Counter(place for _, _, place in people).most_common(1)[0]
    print(f"guessing the most common place ({place}): {percent(n, len(people)).strip()} of the {len(people)} people")
    if args.json_path:
        atomic_write_text(args.json_path, json.dumps({label: list(c) for label, c in counts.items()}) + "\n")
    return counts


if __name__ == "__main__":
    run_script(main)
