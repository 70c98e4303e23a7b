"""
Make a small synthetic stand-in for the CS224N birth-place data.

The real assignment ships four files: wiki.txt (one short biography per
person), birth_places_train.tsv and birth_dev.tsv ("Where was NAME born?<TAB>
PLACE"), and birth_test_inputs.tsv (questions only). This script writes files
in exactly those formats, plus birth_test.tsv (the test questions with their
answers), for made-up people:

- every person gets one wiki line, "Name. <sentence> .", built from one of a
  dozen sentence shapes; most lines also name other places (where the person
  died, studied, worked or lived), so a model has to learn which place is the
  birth place;
- birth places follow a Zipf-like law over ~100 cities and countries, so the
  most common place covers about 7% of people (London is 4.6% in the real
  data);
- train/dev/test are disjoint and split about 68/17/15, like 2000/500/437;
- only printable ASCII and '\n'; the same (n_people, seed, bios_per_person)
  always gives the same bytes;
- with --bios_per_person K > 1 every person also gets K - 1 retold lines, in
  which the full name follows other words ("Records show that NAME was born in
  PLACE ."): the knowledge augmentation that lets QA finetuning read a memorised
  fact out for people it never saw (see RETOLD).

Standard library only. Usage:

    python data/make_synthetic_corpus.py [--out DIR] [--people N] [--seed S] [--bios_per_person K]
"""

import argparse
import hashlib
import json
import os
import random

# -----------------------------------------------------------------------------
# word pools

MALE = """
Aaron Adam Adrian Albert Alexander Alfred Alan Andrew Anthony Arnold Arthur
Benjamin Bernard Bruce Carl Cecil Charles Christopher Clarence Colin Daniel
David Dennis Donald Douglas Edgar Edmund Edward Edwin Elias Emil Eric Ernest
Eugene Felix Ferdinand Francis Frank Frederick Gabriel George Gerald Gilbert
Gordon Gregory Gustav Harold Harry Henry Herbert Howard Hugh Isaac Ivan Jacob
James Jeremy Joachim John Jonathan Joseph Julius Karl Keith Kenneth Lawrence
Leonard Leslie Lewis Louis Ludwig Malcolm Marcus Martin Matthew Maurice Michael
Nathan Neil Nicholas Norman Oliver Oscar Otto Patrick Paul Peter Philip Ralph
Raymond Richard Robert Roger Ronald Rudolf Samuel Sebastian Simon Stanley
Stephen Theodore Thomas Timothy Victor Vincent Walter Wilhelm William
""".split()

FEMALE = """
Abigail Agnes Alice Amelia Anna Annette Barbara Beatrice Bertha Brenda Caroline
Catherine Cecilia Charlotte Clara Claudia Constance Cynthia Daisy Deborah
Diana Dora Dorothy Edith Eleanor Elena Elizabeth Ellen Elsa Emily Emma Esther
Ethel Eva Evelyn Frances Gertrude Grace Hannah Harriet Hazel Helen Ida Irene
Isabel Jane Janet Joan Judith Julia June Katherine Laura Lillian Louise Lucy
Lydia Mabel Margaret Maria Marion Martha Mary Matilda Mildred Miriam Nancy
Natalie Nora Olga Olive Pauline Rachel Rebecca Rosa Ruth Sarah Sophie Susan
Sylvia Teresa Ursula Vera Violet Wilma Yvonne Zoe
""".split()

SURNAMES = """
Abbott Ackerman Adler Ainsworth Albrecht Alcott Aldridge Ambrose Andersen
Appleby Archer Armitage Arnott Ashby Atkins Babcock Bader Bagley Bancroft
Barlow Barnard Bartlett Baxter Beckett Bellamy Benedek Bennett Bergman Bishop
Blackwood Blake Bodnar Bolton Bosch Bowen Bradley Brandt Brennan Brightman
Brooks Buckley Burgess Burnett Caldwell Calloway Carmody Carver Castell
Chandler Chapman Clayton Coleman Collins Conway Corbett Cornell Crane Crawford
Cromwell Crowley Dalton Danvers Darby Dawson Decker Delaney Denholm Dietrich
Donnelly Dorsey Doyle Drummond Duffy Dunbar Durand Eastwood Eckert Elliott
Ellison Emerson Engel Everett Fairchild Falk Farley Faulkner Fenwick Fielding
Finch Fischer Fitzgerald Fleming Fletcher Forbes Forster Fowler Franke Fraser
Gallagher Gardner Garrett Geller Gibbons Gilmore Goddard Goodwin Gorski Graves
Greer Griffin Grimshaw Haas Hadley Halloran Hammond Hansen Harding Harper
Hartmann Haskell Hawkins Hayward Heller Hendricks Hewitt Hoffmann Holloway
Horvath Howell Hubbard Huxley Ingram Irving Jansen Jarvis Jennings Kaminski
Keller Kendall Kessler Kimball Kingsley Klein Knox Kowalski Kramer Kruger
Lambert Landry Langley Larsen Lawson Lehmann Lindqvist Lockhart Lowell Lynch
Maddox Malone Marlowe Marsh Mayer Mercer Merrill Molnar Morrow Mueller Murdoch
Nagel Nash Neumann Norris Novak Oakley Ogden Olsen Osborne Overton Paget
Palmer Parrish Pemberton Petrov Pickering Porter Prescott Pritchard Quinn
Radcliffe Ramsey Rasmussen Redford Reinhardt Rhodes Richter Rigby Rowland
Russo Sandberg Sawyer Schafer Schmidt Seward Shelton Sherwood Sinclair
Slater Sommer Spencer Stafford Steiner Stoddard Strand Sullivan Sutton Szabo
Talbot Thorne Tierney Todd Townsend Tucker Underwood Vance Varga Vogel Wagner
Walsh Warner Webber Weiss Wheeler Whitaker Winslow Wolff Woodward Wright
Yates Young Zeller Zimmer
""".split()

INITIALS = list("ABCDEFGHJKLMNPRSTW")

# Birth places, most common first. No name here is part of another one (so
# "place in line" checks are exact), and none is also a first name or surname.
PLACES = """
London|Paris|Chicago|England|Sydney|Melbourne|Philadelphia|Toronto|Dublin|
Berlin|Budapest|Montreal|Glasgow|Rome|Boston|Vienna|New York City|Edinburgh|
Moscow|Liverpool|Manchester|Germany|Scotland|Los Angeles|Brooklyn|Prague|
Australia|Italy|Canada|Birmingham|Stockholm|Copenhagen|Warsaw|Amsterdam|
Brussels|Madrid|Lisbon|Athens|Istanbul|Cairo|Tokyo|Osaka|Seoul|Beijing|
Shanghai|Mumbai|Calcutta|Lahore|Karachi|Tehran|Baghdad|Beirut|Jerusalem|
Buenos Aires|Santiago|Lima|Havana|Rio de Janeiro|Sao Paulo|Oslo|Helsinki|
Riga|Vilnius|Kiev|Bucharest|Sofia|Belgrade|Zagreb|Munich|Hamburg|Frankfurt|
Cologne|Leipzig|Dresden|Zurich|Geneva|Lyon|Marseille|Naples|Milan|Turin|
Venice|Barcelona|Seville|Porto|Cardiff|Belfast|Leeds|Sheffield|Bristol|
Ottawa|Vancouver|Winnipeg|Auckland|Brisbane|Detroit|Pittsburgh|Cleveland|
Baltimore|San Francisco|New Orleans|Nigeria|Kenya|Ghana|Poland|Hungary|
Sweden|Norway|Austria|Lebanon|Japan|Argentina|Brazil
""".replace("\n", "").split("|")

# a few cities are sometimes written with their state or country, as in the
# real data ("Columbus, Ohio"); the label stays the bare city name
REGIONS = {
    "Philadelphia": "Pennsylvania", "Chicago": "Illinois",
    "Boston": "Massachusetts", "Los Angeles": "California",
    "Brooklyn": "New York", "Detroit": "Michigan", "Pittsburgh": "Pennsylvania",
    "Cleveland": "Ohio", "Baltimore": "Maryland", "New Orleans": "Louisiana",
    "San Francisco": "California", "Melbourne": "Victoria",
    "Sydney": "New South Wales", "Brisbane": "Queensland",
    "Toronto": "Ontario", "Montreal": "Quebec", "Vancouver": "British Columbia",
}

JOBS = """
painter|poet|novelist|journalist|architect|composer|pianist|violinist|
conductor|sculptor|photographer|historian|philosopher|mathematician|physicist|
chemist|biologist|botanist|geologist|astronomer|economist|engineer|surgeon|
physician|lawyer|judge|diplomat|politician|bishop|priest|actor|singer|
dancer|film director|playwright|screenwriter|footballer|cricketer|cyclist|
boxer|rower|tennis player|chess player|swimmer|banker|businessman|publisher|
translator|illustrator|cartoonist|sailor|soldier|aviator|explorer|teacher|
librarian|linguist|archaeologist|anthropologist|psychologist|inventor
""".replace("\n", "").split("|")

MONTHS = """January February March April May June July August September October
November December""".split()

# Each template is the body of a wiki line, after "Name. " and before " .".
# {P} is the birth place, {D}/{E} are other places, {name} the full name,
# {sur} the surname, {he}/{his} pronouns, {job} an occupation, {a} its article,
# {born}/{died} dates, {by}/{dy} years, {title} a word like 'The'.
TEMPLATES = [
    "{name} was {a} {job} born in {P}",
    "{name} is {a} {job} who was born in {P} and now lives in {D}",
    "Born in {P}, {sur} became {a} {job} in {D}",
    "{name} (born {born} in {P}) is {a} {job}",
    "{name} ({born} {P} - {died} {D}) was {a} {job}",
    "{sur} was born on {born} in {P} and died in {D} in {dy}",
    "{sur} was born at {P} in {by}, and studied in {D}",
    "{name} (born in {by} in {P}) is {a} {job} based in {D}",
    "{name} was born in {P} in {by} and moved to {D} as a child",
    "{title} {job} {name} was born in {P} on {born}",
    "{sur} grew up in {D}, although {he} was born in {P}",
    "{name} ({by}-{dy}) was {a} {job} from {D}, born in {P}",
    "After years in {D}, {name}, who was born in {P}, worked as {a} {job} in {E}",
]
# The questions end in '?', so the corpus must contain one for the vocabulary to
# cover them (the real wiki.txt has "(1514? -- 1575)"); the first person gets this.
UNCERTAIN_BIRTH_YEAR = "{name} ({by}? - {dy}) was {a} {job} born in {P}"
TEMPLATES.append(UNCERTAIN_BIRTH_YEAR)

# Retellings for the extra biographies of --bios_per_person: no "Name. " title, and the
# full name always follows other words, as it does in the question "Where was NAME born?".
# A fact seen only after a line-initial name is memorised but cannot be read out from the
# question (Allen-Zhu & Li 2023, arXiv 2309.14316, "knowledge augmentation"); the birth place
# comes early, so that truncation to 4..112 characters still shows it most of the time.
RETOLD = [
    "Records show that {name} was born in {P}",
    "In {by}, {name} was born in {P}",
    "The {job} {name} was born in {P} in {by}",
    "According to {his} family, {name} was born in {P}",
    "It is known that {name} was born in {P} on {born}",
    "Long before {he} moved to {D}, {name} was born in {P}",
    "Historians agree that {name} was born in {P} in {by}",
    "As a child, {name}, who was born in {P}, lived in {D}",
    "{title} {job} {name} was born in {P} on {born}",
    "Friends of {name} say that {he} was born in {P}",
]

# optional clauses appended to make lines longer; {X} is another place
EXTRAS = [
    ", and later worked in {X}",
    ", with a long spell in {X}",
    " before moving to {X} in {my}",
    ", and later trained as {a2} {job2} in {X}",
    ", and spent most of {his} career in {X}",
    "; {he} studied music and law in {X}",
    "; {his} letters are kept in an archive in {X}",
    " and taught for many years at a school in {X}",
    ", and {his} family later settled in {X}",
]

MIN_LEN, MAX_LEN = 50, 200


# -----------------------------------------------------------------------------
# people

def max_people():
    """How many unique names the pools can make."""
    plain = (len(MALE) + len(FEMALE)) * len(SURNAMES)
    middle = sum(len(g) * (len(g) + len(INITIALS)) for g in (MALE, FEMALE))
    return plain + middle * len(SURNAMES)


def split_name(index, with_middle):
    """Turn a number into (first, middle, last, is_female) without repeats.

    Plain names are numbered first x last; names with a middle name (of the
    same gender, or an initial) are numbered first x middle x last.
    """
    last = SURNAMES[index % len(SURNAMES)]
    index //= len(SURNAMES)
    if not with_middle:
        firsts = MALE + FEMALE
        return firsts[index], "", last, firsts[index] in FEMALE
    for group in (MALE, FEMALE):
        middles = group + [c + "." for c in INITIALS]
        if index < len(group) * len(middles):
            first, middle = group[index // len(middles)], middles[index % len(middles)]
            return first, middle, last, group is FEMALE
        index -= len(group) * len(middles)
    raise IndexError("name index out of range")


def make_names(rng, n):
    """n unique names; about two thirds have no middle name."""
    if n > max_people():
        raise ValueError(f"n_people={n} is more than the {max_people()} "
                         "unique names the name pools can make")
    plain = len(MALE + FEMALE) * len(SURNAMES)
    n_plain = min(plain, round(n * 0.65))
    picks = [(i, False) for i in rng.sample(range(plain), n_plain)]
    picks += [(i, True) for i in rng.sample(range(max_people() - plain), n - n_plain)]
    rng.shuffle(picks)
    return [split_name(i, m) for i, m in picks]


def place_weights():
    """Zipf-Mandelbrot weights 1/(rank+3), normalised to sum to 1."""
    w = [1.0 / (rank + 3) for rank in range(1, len(PLACES) + 1)]
    total = sum(w)
    return [x / total for x in w]


WEIGHTS = place_weights()


def birth_places(rng, n):
    """n birth places with counts fixed by the weights, in random order."""
    w = WEIGHTS
    counts = [int(n * p) for p in w]
    # hand out the remainder to the largest fractional parts
    order = sorted(range(len(w)), key=lambda i: n * w[i] - counts[i], reverse=True)
    for i in order[:n - sum(counts)]:
        counts[i] += 1
    places = [p for p, c in zip(PLACES, counts) for _ in range(c)]
    rng.shuffle(places)
    return places


def other_place(rng, avoid):
    """A place drawn from the same skewed law, not one of `avoid`."""
    while True:
        p = rng.choices(PLACES, weights=WEIGHTS)[0]
        if p not in avoid:
            return p


# -----------------------------------------------------------------------------
# wiki lines

def date(rng, year):
    return f"{rng.randint(1, 28)} {rng.choice(MONTHS)} {year}"


def article(word):
    return "an" if word[0] in "aeiou" else "a"


def with_region(rng, place):
    if place in REGIONS and rng.random() < 0.3:
        return f"{place}, {REGIONS[place]}"
    return place


def wiki_line(rng, person, place, template=None, titled=True):
    """One biography line: 'Full Name. <sentence> .', or with titled=False a sentence from
    RETOLD in which the full name follows other words: '<sentence> .'"""
    first, middle, last, female = person
    name = " ".join(w for w in (first, middle, last) if w)
    by = rng.randint(1800, 1960)
    dy = min(by + rng.randint(35, 95), 2019)
    job, job2 = rng.sample(JOBS, 2)
    d = other_place(rng, {place})
    e = other_place(rng, {place, d})
    fields = dict(
        name=name, sur=last, job=job, a=article(job), job2=job2,
        a2=article(job2), by=by, dy=dy, my=by + rng.randint(18, 34),
        born=date(rng, by), died=date(rng, dy), he="she" if female else "he",
        his="her" if female else "his", P=with_region(rng, place), D=d, E=e,
        title=rng.choice(["The", "Noted", "Celebrated", "Prolific"]),
    )
    prefix = f"{name}. " if titled else ""
    templates = TEMPLATES if titled else RETOLD
    body = (template or rng.choice(templates)).format(**fields)
    while len(prefix + body) + 2 > MAX_LEN:  # rare: long name and places
        body = rng.choice(templates[:4]).format(**fields)
    target = min(MAX_LEN, int(rng.triangular(MIN_LEN, MAX_LEN, 110)))
    used = {place, d, e}
    for extra in rng.sample(EXTRAS, len(EXTRAS)):
        if len(prefix + body) + 2 >= target:
            break
        x = other_place(rng, used)
        more = extra.format(X=x, **fields)
        if len(prefix + body + more) + 2 <= MAX_LEN:
            body += more
            used.add(x)
    return prefix + body + " ."


# -----------------------------------------------------------------------------
# files

def write_lines(path, lines):
    with open(path, "w", encoding="ascii", newline="\n") as f:
        f.write("".join(line + "\n" for line in lines))


def split_sizes(n):
    """Train/dev/test sizes in the real 2000/500/437 proportions."""
    n_train = round(n * 2000 / 2937)
    n_dev = round(n * 500 / 2937)
    return n_train, n_dev, n - n_train - n_dev


def make_corpus(out_dir, n_people=1000, seed=0, bios_per_person=1):
    """Write the five files and MANIFEST into out_dir; return {name: path} of the five.
    Each person gets one titled wiki line and bios_per_person - 1 retold ones (RETOLD)."""
    if n_people < 20:
        raise ValueError(f"n_people must be at least 20, got {n_people}")
    if bios_per_person < 1:
        raise ValueError(f"bios_per_person must be at least 1, got {bios_per_person}")
    rng = random.Random(seed)
    people = make_names(rng, n_people)
    places = birth_places(rng, n_people)
    lines = [wiki_line(rng, p, b, UNCERTAIN_BIRTH_YEAR if i == 0 else None)
             for i, (p, b) in enumerate(zip(people, places))]
    # drawn after the titled lines, so that bios_per_person=1 gives the same bytes as ever
    lines += [wiki_line(rng, p, b, titled=False)
              for _ in range(bios_per_person - 1) for p, b in zip(people, places)]
    names = [" ".join(w for w in p[:3] if w) for p in people]
    qa = [(f"Where was {n} born?", b) for n, b in zip(names, places)]

    n_train, n_dev, _ = split_sizes(n_people)
    train = qa[:n_train]
    dev = qa[n_train:n_train + n_dev]
    test = qa[n_train + n_dev:]
    rng.shuffle(lines)

    os.makedirs(out_dir, exist_ok=True)
    paths = {
        "wiki": os.path.join(out_dir, "wiki.txt"),
        "train": os.path.join(out_dir, "birth_places_train.tsv"),
        "dev": os.path.join(out_dir, "birth_dev.tsv"),
        "test_inputs": os.path.join(out_dir, "birth_test_inputs.tsv"),
        "test": os.path.join(out_dir, "birth_test.tsv"),
    }
    write_lines(paths["wiki"], lines)
    write_lines(paths["train"], [f"{q}\t{a}" for q, a in train])
    write_lines(paths["dev"], [f"{q}\t{a}" for q, a in dev])
    write_lines(paths["test_inputs"], [q for q, _ in test])
    write_lines(paths["test"], [f"{q}\t{a}" for q, a in test])
    write_manifest(out_dir, options(n_people, seed, bios_per_person))
    return paths


# -----------------------------------------------------------------------------
# which generator and options made a folder, so that a stale corpus is noticed

MANIFEST = "corpus.json"


def options(n_people, seed, bios_per_person):
    """What decides a corpus's bytes: the options and this file's source (its version)."""
    with open(__file__, "rb") as f:
        version = hashlib.sha256(f.read()).hexdigest()[:16]
    return {"generator": version, "people": n_people, "seed": seed, "bios_per_person": bios_per_person}


def write_manifest(out_dir, opts):
    with open(os.path.join(out_dir, MANIFEST), "w", encoding="ascii", newline="\n") as f:
        f.write(json.dumps(opts, sort_keys=True) + "\n")


def is_current(out_dir, n_people, seed, bios_per_person):
    """True when out_dir holds all five files, made by this generator with these options."""
    try:
        with open(os.path.join(out_dir, MANIFEST), encoding="ascii") as f:
            made_with = json.load(f)
    except (OSError, ValueError):
        return False
    files = ("wiki.txt", "birth_places_train.tsv", "birth_dev.tsv", "birth_test_inputs.tsv", "birth_test.tsv")
    return made_with == options(n_people, seed, bios_per_person) and \
        all(os.path.isfile(os.path.join(out_dir, name)) for name in files)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--out", default=os.path.join("data", "synthetic"),
                        help="output folder (default: data/synthetic)")
    parser.add_argument("--people", type=int, default=1000,
                        help="number of people (default: 1000, at least 20)")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--bios_per_person", type=int, default=1,
                        help="wiki lines per person: one titled line, the others retold with the name "
                             "after other words (default: 1, the assignment's shape)")
    parser.add_argument("--keep_if_current", action="store_true",
                        help=f"write nothing when --out already holds this corpus ({MANIFEST} says which "
                             "generator version and options made it); regenerate it otherwise")
    args = parser.parse_args(argv)
    if args.people < 20:
        parser.error(f"--people must be at least 20, got {args.people}")
    if args.bios_per_person < 1:
        parser.error(f"--bios_per_person must be at least 1, got {args.bios_per_person}")
    if args.people > max_people():
        parser.error(f"--people can be at most {max_people()} "
                     "(the name pools run out of unique names)")
    what = f"{args.people} people x {args.bios_per_person} wiki lines (seed {args.seed})"
    if args.keep_if_current and is_current(args.out, args.people, args.seed, args.bios_per_person):
        print(f"{args.out} already holds the synthetic corpus of {what}")
        return None
    paths = make_corpus(args.out, args.people, args.seed, args.bios_per_person)
    n_train, n_dev, n_test = split_sizes(args.people)
    print(f"wrote {args.people * args.bios_per_person} wiki lines ({what}) and {n_train}/{n_dev}/{n_test} "
          f"train/dev/test questions to {args.out}")
    return paths


if __name__ == "__main__":
    main()
