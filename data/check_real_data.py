"""
Check the real CS224N data files against data/SHA256SUMS.

    python data/check_real_data.py [DIR]

Looks in DIR, or by default in the repo root and then data/, and prints
OK / MISMATCH / missing for each file. Either public copy of wiki.txt (with or
without the final newline) is accepted. Exits 1 on any mismatch or when
wiki.txt is missing; missing .tsv files are reported but allowed.
"""

import hashlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SUMS = os.path.join(HERE, "SHA256SUMS")


def read_sums(path=SUMS):
    """{file name: [accepted sha256, ...]} from a sha256sum-style file.

    Lines are 'HASH  NAME'; '# alt: HASH  NAME (note)' adds another accepted
    hash for NAME; other '#' lines are comments.
    """
    sums = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line.startswith("# alt:"):
                line = line[len("# alt:"):].strip()
            elif not line or line.startswith("#"):
                continue
            digest, name = line.split(None, 1)
            name = name.split(" (")[0].lstrip("*")
            sums.setdefault(name, []).append(digest.lower())
    return sums


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def find(name, dirs):
    for d in dirs:
        path = os.path.join(d, name)
        if os.path.isfile(path):
            return path
    return None


def check(dirs):
    """Print one line per file; return True if all is well."""
    ok = True
    for name, digests in read_sums().items():
        path = find(name, dirs)
        if path is None:
            print(f"missing   {name}")
            if name == "wiki.txt":
                ok = False
        elif sha256(path) in digests:
            print(f"OK        {path}")
        else:
            print(f"MISMATCH  {path} (sha256 {sha256(path)})")
            ok = False
    return ok


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    if len(argv) > 1 or any(a.startswith("-") for a in argv):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    dirs = argv if argv else [ROOT, HERE]
    return 0 if check(dirs) else 1


if __name__ == "__main__":
    sys.exit(main())
