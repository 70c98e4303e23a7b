"""Tests for data/make_synthetic_corpus.py and data/check_real_data.py."""

import collections
import filecmp
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "data")
REAL = os.path.join(os.path.dirname(ROOT), "shared", "data")
NAMES = ["wiki", "train", "dev", "test_inputs", "test"]


def load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(DATA, name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = load("make_synthetic_corpus")


def read(path):
    with open(path, "rb") as f:
        return f.read().decode("ascii")


def lines(path):
    text = read(path)
    assert text.endswith("\n") and "\r" not in text
    return text[:-1].split("\n")


def qa_pairs(path):
    return [tuple(line.split("\t")) for line in lines(path)]


def who(question):
    assert question.startswith("Where was ") and question.endswith(" born?")
    return question[len("Where was "):-len(" born?")]


def by_name(wiki):
    """{name: line}; a line starts with 'NAME. ' (names may hold 'J.')."""
    out = {}
    for line in wiki:
        i = line.find(". ")
        while i != -1:
            out.setdefault(line[:i], line)
            i = line.find(". ", i + 1)
    return out


@pytest.fixture(scope="module", params=[1, 3], ids=["bios1", "bios3"])
def bios(request):
    """Wiki lines per person: every property of the corpus holds for the assignment's shape and
    for the knowledge-augmented one."""
    return request.param


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, bios):
    out = tmp_path_factory.mktemp("syn")
    paths = gen.make_corpus(str(out), n_people=1000, seed=0, bios_per_person=bios)
    wiki = lines(paths["wiki"])
    splits = {k: qa_pairs(paths[k]) for k in ("train", "dev", "test")}
    return paths, wiki, splits


def test_paths(corpus):
    paths, _, _ = corpus
    assert sorted(paths) == sorted(NAMES)
    files = {os.path.basename(p) for p in paths.values()}
    assert files == {"wiki.txt", "birth_places_train.tsv", "birth_dev.tsv",
                     "birth_test_inputs.tsv", "birth_test.tsv"}


def test_deterministic(corpus, bios, tmp_path):
    paths, _, _ = corpus
    again = gen.make_corpus(str(tmp_path / "a"), n_people=1000, seed=0, bios_per_person=bios)
    other = gen.make_corpus(str(tmp_path / "b"), n_people=1000, seed=1, bios_per_person=bios)
    for k in NAMES:
        assert filecmp.cmp(paths[k], again[k], shallow=False)
        assert read(paths[k]) != read(other[k])


def test_formats(corpus):
    paths, wiki, splits = corpus
    for k in ("train", "dev", "test"):
        for line in lines(paths[k]):
            assert line.count("\t") == 1
            question, place = line.split("\t")
            assert who(question) and place and place == place.strip()
    for line in lines(paths["test_inputs"]):
        assert "\t" not in line
        who(line)
    assert [q for q, _ in splits["test"]] == lines(paths["test_inputs"])
    for line in wiki:
        assert line.endswith(" .") and not line.endswith("  .")
        assert 40 <= len(line) <= 220


def test_ascii_only(corpus):
    paths, _, _ = corpus
    for k in NAMES:
        text = read(paths[k])
        assert "\u25a1" not in text and "\u2047" not in text
        assert all(c == "\n" or c == "\t" or " " <= c <= "~" for c in text)


def test_sizes_and_splits(corpus, bios):
    _, wiki, splits = corpus
    assert len(wiki) == 1000 * bios
    sizes = [len(splits[k]) for k in ("train", "dev", "test")]
    assert sum(sizes) == 1000
    assert 650 <= sizes[0] <= 710 and 150 <= sizes[1] <= 190 and 130 <= sizes[2] <= 170
    names = [who(q) for k in splits for q, _ in splits[k]]
    assert len(set(names)) == len(names)
    for a, b in [("train", "dev"), ("train", "test"), ("dev", "test")]:
        assert not {q for q, _ in splits[a]} & {q for q, _ in splits[b]}


def test_names_unique_and_in_wiki(corpus, bios):
    _, wiki, splits = corpus
    names = [who(q) for k in splits for q, _ in splits[k]]
    assert len(set(names)) == len(names) == len(wiki) // bios
    index = by_name(wiki)
    # every asked-about person has a titled line, and no two share one
    assert all(n in index for n in names)
    assert len({index[n] for n in names}) == len(names)


def test_retold_lines_put_other_words_before_the_full_name(corpus, bios):
    """Besides the titled line, each person has bios-1 lines in which the full name follows
    other words and is followed by the birth place (the shape of the question)."""
    _, wiki, splits = corpus
    index = by_name(wiki)
    titled = set(index[who(q)] for k in splits for q, _ in splits[k])
    retold = [line for line in wiki if line not in titled]
    assert len(retold) == len(wiki) - len(titled) == (bios - 1) * len(titled)
    place_of = {who(q): place for k in splits for q, place in splits[k]}
    mentions = collections.Counter()
    early = 0
    for line in retold:
        # the full name of the person the line is about: the one followed by their birth place
        about = [n for n, place in place_of.items() if f" {n}" in line and place in line[line.find(n):]]
        assert about, line
        name = max(about, key=len)  # "John Smith" is part of "John A. Smith"; the longer is meant
        start = line.find(" " + name) + 1
        assert start > 0 and line[:start].strip() and not line.startswith(name + ". ")
        mentions[name] += 1
        early += line.find(place_of[name], start) + len(place_of[name]) <= 90
    assert all(count == bios - 1 for count in mentions.values()) and len(mentions) == len(titled) * (bios > 1)
    assert not retold or early / len(retold) >= 0.9


def test_more_bios_only_add_lines(corpus, bios, tmp_path):
    """bios_per_person=K keeps the titled lines and the question files of K=1, byte for byte."""
    paths, wiki, _ = corpus
    one = gen.make_corpus(str(tmp_path), n_people=1000, seed=0, bios_per_person=1)
    assert set(lines(one["wiki"])) <= set(wiki)
    for k in ("train", "dev", "test_inputs", "test"):
        assert filecmp.cmp(paths[k], one[k], shallow=False)


def test_birth_place_in_line(corpus):
    _, wiki, splits = corpus
    index = by_name(wiki)
    early = 0
    pairs = [p for k in splits for p in splits[k]]
    for q, place in pairs:
        line = index[who(q)]
        assert place in line
        early += line.find(place) + len(place) <= 90
    assert early / len(pairs) >= 0.8


def test_distractors(corpus):
    _, wiki, splits = corpus
    index = by_name(wiki)
    pairs = [p for k in splits for p in splits[k]]
    with_other = sum(any(p != place and p in index[who(q)] for p in gen.PLACES)
                     for q, place in pairs)
    assert with_other / len(pairs) >= 0.5


def test_place_skew(corpus):
    _, _, splits = corpus
    places = [place for k in splits for _, place in splits[k]]
    counts = collections.Counter(places)
    share = counts.most_common(1)[0][1] / len(places)
    assert 0.05 <= share <= 0.10
    assert 40 <= len(counts) <= 150
    assert set(counts) <= set(gen.PLACES)


def test_pools_do_not_clash():
    for a in gen.PLACES:
        for b in gen.PLACES:
            assert a == b or a not in b
    words = set(gen.MALE + gen.FEMALE + gen.SURNAMES)
    assert len(gen.MALE + gen.FEMALE) == len(set(gen.MALE + gen.FEMALE))
    assert len(gen.SURNAMES) == len(set(gen.SURNAMES))
    for p in gen.PLACES:
        assert not set(p.split()) & words
    assert len(gen.TEMPLATES) >= 8


def test_many_people_and_limits(tmp_path):
    assert gen.max_people() >= 100_000
    with pytest.raises(ValueError):
        gen.make_corpus(str(tmp_path), n_people=gen.max_people() + 1)
    with pytest.raises(ValueError):
        gen.make_corpus(str(tmp_path), n_people=19)
    paths = gen.make_corpus(str(tmp_path), n_people=20, seed=3)
    assert len(lines(paths["wiki"])) == 20
    # the name numbering covers every index exactly once at the edges
    n = gen.max_people()
    plain = len(gen.MALE + gen.FEMALE) * len(gen.SURNAMES)
    assert gen.split_name(plain - 1, False)[0] == gen.FEMALE[-1]
    assert gen.split_name(n - plain - 1, True)[:2] == (gen.FEMALE[-1], gen.INITIALS[-1] + ".")
    with pytest.raises(IndexError):
        gen.split_name(n - plain, True)


def test_cli(tmp_path):
    script = os.path.join(DATA, "make_synthetic_corpus.py")
    out = tmp_path / "cli"
    r = subprocess.run([sys.executable, script, "--out", str(out), "--people", "50",
                        "--seed", "7"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.strip().splitlines()) == 1
    assert len(lines(out / "wiki.txt")) == 50
    ref = gen.make_corpus(str(tmp_path / "api"), n_people=50, seed=7)
    for k in NAMES:
        assert filecmp.cmp(ref[k], out / os.path.basename(ref[k]), shallow=False)
    r = subprocess.run([sys.executable, script, "--out", str(out), "--people", "19"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "at least 20" in r.stderr
    r = subprocess.run([sys.executable, script, "--out", str(out), "--bios_per_person", "0"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "at least 1" in r.stderr and "Traceback" not in r.stderr


def test_keep_if_current_regenerates_only_a_stale_corpus(tmp_path):
    """The demo asks for a corpus with --keep_if_current: the same generator and options write
    nothing; other options, another generator version or a missing file regenerate it."""
    script = os.path.join(DATA, "make_synthetic_corpus.py")
    out = tmp_path / "c"

    def make(*options):
        r = subprocess.run([sys.executable, script, "--out", str(out), "--people", "30", "--keep_if_current",
                            *options], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return r.stdout

    assert make().startswith("wrote 30 wiki lines")
    stamp = os.stat(out / "wiki.txt").st_mtime_ns
    assert "already holds" in make()
    assert os.stat(out / "wiki.txt").st_mtime_ns == stamp
    assert make("--bios_per_person", "2").startswith("wrote 60 wiki lines")
    assert len(lines(out / "wiki.txt")) == 60
    assert "already holds" in make("--bios_per_person", "2")
    manifest = json.loads((out / gen.MANIFEST).read_text())
    (out / gen.MANIFEST).write_text(json.dumps(dict(manifest, generator="an older one")))
    assert make("--bios_per_person", "2").startswith("wrote")
    os.remove(out / "birth_dev.tsv")
    assert make("--bios_per_person", "2").startswith("wrote") and (out / "birth_dev.tsv").is_file()
    (out / gen.MANIFEST).write_text("not json")
    assert make("--bios_per_person", "2").startswith("wrote")


# -----------------------------------------------------------------------------
# check_real_data.py

CHECK = os.path.join(DATA, "check_real_data.py")
REAL_FILES = ["wiki.txt", "birth_places_train.tsv", "birth_dev.tsv", "birth_test_inputs.tsv"]


def run_check(folder):
    return subprocess.run([sys.executable, CHECK, str(folder)], capture_output=True, text=True)


def test_sums_file():
    sums = load("check_real_data").read_sums()
    assert sorted(sums) == sorted(REAL_FILES)
    assert len(sums["wiki.txt"]) == 2
    assert all(len(d) == 64 for ds in sums.values() for d in ds)


def test_check_missing_wiki(tmp_path):
    r = run_check(tmp_path)
    assert r.returncode != 0
    assert "missing" in r.stdout and "wiki.txt" in r.stdout


def test_check_synthetic_is_mismatch(corpus):
    paths, _, _ = corpus
    r = run_check(os.path.dirname(paths["wiki"]))
    assert r.returncode != 0 and "MISMATCH" in r.stdout


need_real = pytest.mark.skipif(not all(os.path.isfile(os.path.join(REAL, f)) for f in REAL_FILES),
                               reason="real data not in ../shared/data")


@need_real
def test_check_real_both_wiki_variants(tmp_path):
    r = run_check(REAL)
    assert r.returncode == 0, r.stdout
    assert r.stdout.count("OK") == 4
    for f in REAL_FILES:
        shutil.copy(os.path.join(REAL, f), tmp_path / f)
    with open(tmp_path / "wiki.txt", "rb") as f:
        text = f.read()
    assert text.endswith(b"\n")
    with open(tmp_path / "wiki.txt", "wb") as f:
        f.write(text[:-1])
    r = run_check(tmp_path)
    assert r.returncode == 0, r.stdout
    assert r.stdout.count("OK") == 4


@need_real
def test_check_real_corrupted(tmp_path):
    for f in REAL_FILES:
        shutil.copy(os.path.join(REAL, f), tmp_path / f)
    with open(tmp_path / "birth_dev.tsv", "ab") as f:
        f.write(b"x")
    r = run_check(tmp_path)
    assert r.returncode != 0
    assert "MISMATCH" in r.stdout and "birth_dev.tsv" in r.stdout
    assert r.stdout.count("OK") == 3


@pytest.mark.parametrize("n_people,seed", [(20, 0), (20, 1), (20, 2), (50, 7), (1000, 0)])
def test_question_files_fit_the_wiki_vocabulary(tmp_path, n_people, seed):
    """Every character of the question files (questions and answers) occurs in wiki.txt,
    whose characters are the vocabulary: else finetuning refuses the file."""
    paths = gen.make_corpus(str(tmp_path), n_people=n_people, seed=seed)
    vocab = set(read(paths["wiki"]))
    for k in ("train", "dev", "test_inputs", "test"):
        for line in lines(paths[k]):
            fields = line.split("\t")
            assert set("".join(fields)) <= vocab, (k, line, sorted(set("".join(fields)) - vocab))
