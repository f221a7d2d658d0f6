#!/usr/bin/env python
"""Derive atlas-align's built-in default corpus from Debian's ``wordnet-base`` (WordNet 3.0).

Each synset yields one gloss row (``"<lemmas>: <definition>"``) and one row per example sentence,
labelled with its lexicographer category (``noun.animal``, ``verb.motion``, ... per lexnames(5)).
Categories are capped by a deterministic hash-ordered subsample so the file stays a few MB; the
gzip header carries no name or time, so re-running on the same input gives identical bytes.

    apt-get update && apt-get install -y wordnet-base
    python scripts/derive_wordnet_corpus.py            # writes atlas_align/data/...
"""

from __future__ import annotations

import argparse
import collections
import gzip
import hashlib
import json
import re
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from atlas_align.corpus.builtin import (  # noqa: E402
    CATEGORIES,
    CORPUS_FILENAME,
    LICENSE_FILENAME,
)

WORDNET_DIR = Path("/usr/share/wordnet")
COPYRIGHT_FILE = Path("/usr/share/doc/wordnet-base/copyright")
DATA_FILES = ("noun", "verb", "adj", "adv")
MIN_WORDS = 4
MAX_LEMMAS_IN_GLOSS = 3
HYPERNYM_POINTERS = ("@", "@i")  # ordinary and instance hypernyms
QUOTED = re.compile(r'"([^"]+)"')
ADJ_MARKER = re.compile(r"\((?:a|p|ip)\)$")  # adjective position markers on lemmas


def parse_data_line(line: str) -> dict:
    """Split one ``data.*`` line into its fields (wndb(5))."""
    head, _, gloss = line.partition(" | ")
    fields = head.split()
    offset, lex_filenum, ss_type = fields[0], int(fields[1]), fields[2]
    word_count = int(fields[3], 16)
    words = [ADJ_MARKER.sub("", fields[4 + 2 * i]) for i in range(word_count)]
    cursor = 4 + 2 * word_count
    pointer_count = int(fields[cursor])
    pointers = [fields[cursor + 1 + 4 * i : cursor + 5 + 4 * i] for i in range(pointer_count)]
    hypernym = next(
        (f"{ptr[1]}-{ptr[2]}" for ptr in pointers if ptr[0] in HYPERNYM_POINTERS), None
    )
    return {
        "offset": offset,
        "pos": ss_type,
        "category": CATEGORIES[lex_filenum],
        "lemmas": [w.replace("_", " ") for w in words],
        "hypernym": hypernym,
        "gloss": gloss.strip(),
    }


def first_example_start(gloss: str) -> int | None:
    """Index of the quote that opens the first example, skipping quotes inside parentheses.

    Most glosses use ``definition; "example"``, but some use ``:``, ``,`` or only a space.
    """
    depth = 0
    for index, char in enumerate(gloss):
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(depth - 1, 0)
        elif char == '"' and depth == 0:
            before = gloss[:index].rstrip()
            if not before or before[-1] in ";:," or gloss[index - 1].isspace():
                return index
    return None


def split_gloss(gloss: str) -> tuple[str, list[str]]:
    """Return the definition and the quoted example sentences of a gloss."""
    start = first_example_start(gloss)
    if start is None:
        return gloss.strip(" ;:,"), []
    definition = gloss[:start].strip(" ;:,")
    examples = [ex.strip() for ex in QUOTED.findall(gloss[start:])]
    return definition, [ex for ex in examples if ex]


def synset_rows(synset: dict) -> list[dict]:
    """The corpus rows one synset contributes: its gloss, then its examples."""
    definition, examples = split_gloss(synset["gloss"])
    base = {
        "category": synset["category"],
        "synset": f"{synset['offset']}-{synset['pos']}",
        "lemma": synset["lemmas"][0],
        "hypernym": synset["hypernym"],
    }
    texts = []
    if definition:
        lemmas = ", ".join(synset["lemmas"][:MAX_LEMMAS_IN_GLOSS])
        texts.append(("gloss", f"{lemmas}: {definition}"))
    texts.extend(("example", example) for example in examples)
    return [
        {"text": text, **base, "kind": kind}
        for kind, text in texts
        if len(text.split()) >= MIN_WORDS
    ]


def read_synsets(wordnet_dir: Path) -> list[dict]:
    synsets = []
    for name in DATA_FILES:
        with open(wordnet_dir / f"data.{name}", encoding="utf-8") as handle:
            for line in handle:
                if not line.startswith("  "):  # licence header lines start with two spaces
                    synsets.append(parse_data_line(line.rstrip("\n")))
    return synsets


def sample_key(seed: int, synset: dict) -> str:
    # A hash, not random.shuffle, so the sample does not depend on Python's RNG implementation.
    return hashlib.sha256(f"{seed}:{synset['offset']}-{synset['pos']}".encode()).hexdigest()


def derive_rows(synsets: list[dict], cap_per_category: int, seed: int) -> list[dict]:
    """Keep whole synsets, hash-ordered, until each category holds about ``cap`` rows."""
    by_category: dict[str, list[dict]] = collections.defaultdict(list)
    for synset in synsets:
        by_category[synset["category"]].append(synset)
    rows = []
    for category in CATEGORIES:
        kept: list[tuple[dict, list[dict]]] = []
        count = 0
        for synset in sorted(by_category[category], key=lambda s: sample_key(seed, s)):
            if count >= cap_per_category:
                break
            synset_texts = synset_rows(synset)
            if synset_texts:
                kept.append((synset, synset_texts))
                count += len(synset_texts)
        kept.sort(key=lambda pair: (pair[0]["pos"], pair[0]["offset"]))
        rows.extend(row for _, synset_texts in kept for row in synset_texts)
    return rows


def write_jsonl_gz(rows: list[dict], path: Path) -> None:
    payload = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()
    with open(path, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz:
            gz.write(payload)


def extract_license(copyright_file: Path) -> str:
    """The WordNet3.0 licence paragraph of a Debian copyright file, de-indented."""
    lines = copyright_file.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("License: WordNet3.0"))
    body = []
    for line in lines[start + 1 :]:
        if not line.startswith(" "):
            break
        body.append("" if line.strip() == "." else line[1:])
    header = (
        "WordNet 3.0 licence (Princeton University), which covers the derived file "
        f"{CORPUS_FILENAME}\n(glosses and example sentences of WordNet 3.0, "
        "taken from Debian's wordnet-base package).\n\n"
    )
    return header + "\n".join(body).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--wordnet-dir", type=Path, default=WORDNET_DIR)
    parser.add_argument("--copyright-file", type=Path, default=COPYRIGHT_FILE)
    parser.add_argument("--out-dir", type=Path, default=REPO_ROOT / "atlas_align" / "data")
    parser.add_argument("--cap-per-category", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if not (args.wordnet_dir / "data.noun").is_file():
        parser.error(
            f"{args.wordnet_dir}/data.noun not found; run "
            "'apt-get update && apt-get install -y wordnet-base' first."
        )
    rows = derive_rows(read_synsets(args.wordnet_dir), args.cap_per_category, args.seed)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    corpus_path = args.out_dir / CORPUS_FILENAME
    write_jsonl_gz(rows, corpus_path)
    (args.out_dir / LICENSE_FILENAME).write_text(extract_license(args.copyright_file))

    counts = collections.Counter(row["category"] for row in rows)
    for category in CATEGORIES:
        print(f"{category:24s} {counts[category]:6d}")
    size_mb = corpus_path.stat().st_size / 1e6
    print(f"{len(rows)} rows, {len(counts)} categories, {corpus_path} ({size_mb:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
