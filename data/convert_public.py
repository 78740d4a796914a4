#!/usr/bin/env python3
"""Convert public text-classification data sets into the JSONL files under data/.

Standalone, standard library only; nothing imports it. It reads the original files from the
paths given on the command line (take them out of the source repositories at the commits named in
data/README.md, e.g. `git --git-dir=REPO.git show COMMIT:PATH > FILE`, or pass `<(git ... show ...)`)
and writes JSONL (UTF-8, ensure_ascii=False, one object per line, same keys on every row).

    python data/convert_public.py agnews    TEST_CSV OUT_DIR [--train-csv TRAIN_CSV]
    python data/convert_public.py banking77 TRAIN_CSV TEST_CSV OUT_DIR
    python data/convert_public.py emotion   TRAIN_TXT VAL_TXT TEST_TXT OUT_DIR
    python data/convert_public.py snli      VALIDATION_TSV TEST_TSV OUT_DIR

Every random choice uses random.Random(0) (a fresh instance per choice, described per data set
below), so a rerun on the same inputs gives byte-identical files.  After sampling, every train-pool
row whose text (for NLI: whose (premise, hypothesis) pair) also occurs in the test file is dropped.
"""

import argparse
import collections
import csv
import hashlib
import html
import io
import json
import os
import random
import re
import sys

SEED = 0


# ----------------------------------------------------------------------------- helpers

def read_text(path):
    with open(path, "rb") as f:
        data = f.read()
    return data.decode("utf-8")


def ws(s):
    """Strip and collapse every run of whitespace (incl. newlines, tabs, NBSP) to one space."""
    return " ".join(s.split())


def write_jsonl(path, rows):
    keys = None
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for r in rows:
            if keys is None:
                keys = list(r)
            assert list(r) == keys, (path, r)
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    with open(path, "rb") as f:
        data = f.read()
    print("wrote %s: %d rows, %d bytes, sha256 %s"
          % (path, len(rows), len(data), hashlib.sha256(data).hexdigest()))


def stratified_sample(rows, per_label, seed=SEED, label_key="label"):
    """rng = random.Random(seed); for each label in sorted order, rng.sample(rows of that label in
    input order, per_label); concatenate; rng.shuffle(result) with the same rng."""
    rng = random.Random(seed)
    groups = collections.defaultdict(list)
    for r in rows:
        groups[r[label_key]].append(r)
    out = []
    for lab in sorted(groups):
        if len(groups[lab]) < per_label:
            raise SystemExit("label %r has only %d rows (< %d)" % (lab, len(groups[lab]), per_label))
        out.extend(rng.sample(groups[lab], per_label))
    rng.shuffle(out)
    return out


def plain_sample(rows, n, seed=SEED):
    """random.Random(seed).sample(rows, n) (the result order is the sample order)."""
    return random.Random(seed).sample(rows, n)


def drop_test_overlap(train, test, key):
    test_keys = {key(r) for r in test}
    kept = [r for r in train if key(r) not in test_keys]
    print("  train rows dropped for exact overlap with test: %d" % (len(train) - len(kept)))
    return kept


def report(name, rows, key):
    c = collections.Counter(r["label"] for r in rows)
    keys = [key(r) for r in rows]
    print("  %s: %d rows; labels %s; duplicate keys within file: %d; empty: %d"
          % (name, len(rows), dict(sorted(c.items())), len(keys) - len(set(keys)),
             sum(1 for r in rows for k, v in r.items() if isinstance(v, str) and not v.strip())))


# ----------------------------------------------------------------------------- AG News

AG_LABELS = {"1": "world", "2": "sports", "3": "business", "4": "sci_tech"}
# Entities whose leading '&' the AG crawl turned into a space (" #39;s", "Johnson  amp; Johnson",
# " quot;hi quot;") or kept ("&lt;TXN.N&gt;").  The one character before the entity (a space or
# '&') is consumed; html.unescape maps #145-#151 to the cp1252 characters (’ “ ” —).
AG_ENTITY = re.compile(r"(?:^|[ &])(#\d{1,4}|quot|amp|lt|gt|nbsp|apos);")
# HTML markup that appears once the entities are decoded (e.g. <FONT face=...><B>-The Washington
# Post</B></FONT>); only these tag names are removed, so tickers such as <TXN.N> stay.
AG_TAG = re.compile(r"</?(?:font|b|i|a|p|br|em|strong|span|div|img|nobr)\b[^<>]*>", re.I)


def ag_clean(s):
    s = AG_ENTITY.sub(lambda m: html.unescape("&" + m.group(1) + ";"), s)
    s = AG_TAG.sub(" ", s)
    s = s.replace("\\$", "$")          # escaped dollar sign: "\$1B" -> "$1B"
    s = re.sub(r"\\+", " ", s)          # other backslashes stand for lost line breaks: "second\team"
    return ws(s)


def ag_read(path):
    rows = []
    for i, rec in enumerate(csv.reader(io.StringIO(read_text(path), newline=""))):
        if len(rec) != 3 or rec[0] not in AG_LABELS:
            raise SystemExit("%s line %d: unexpected record %r" % (path, i + 1, rec[:1]))
        title, desc = ag_clean(rec[1]), ag_clean(rec[2])
        rows.append({"text": title + ". " + desc, "label": AG_LABELS[rec[0]], "_idx": i})
    return rows


def cmd_agnews(a):
    test_all = ag_read(a.test_csv)
    print("original test rows: %d" % len(test_all))
    test = stratified_sample(test_all, 250)
    if a.train_csv:
        pool_src = ag_read(a.train_csv)
        print("train pool drawn from the original train split (%d rows)" % len(pool_src))
    else:
        chosen = {r["_idx"] for r in test}
        pool_src = [r for r in test_all if r["_idx"] not in chosen]
        print("NO train csv given: train pool drawn from the %d original *test* rows not in test.jsonl"
              % len(pool_src))
    train = stratified_sample(pool_src, 1000)
    train = drop_test_overlap(train, test, key=lambda r: r["text"])
    strip = lambda rows: [{"text": r["text"], "label": r["label"]} for r in rows]
    train, test = strip(train), strip(test)
    report("train", train, lambda r: r["text"])
    report("test", test, lambda r: r["text"])
    write_jsonl(os.path.join(a.out_dir, "train.jsonl"), train)
    write_jsonl(os.path.join(a.out_dir, "test.jsonl"), test)


# ----------------------------------------------------------------------------- Banking77

def banking_read(path):
    recs = list(csv.reader(io.StringIO(read_text(path), newline="")))
    if recs[0] != ["text", "category"]:
        raise SystemExit("%s: unexpected header %r" % (path, recs[0]))
    rows = []
    for rec in recs[1:]:
        if len(rec) != 2:
            raise SystemExit("%s: bad record %r" % (path, rec))
        rows.append({"text": ws(rec[0]), "label": rec[1]})
    return rows


def cmd_banking77(a):
    train, test = banking_read(a.train_csv), banking_read(a.test_csv)
    train = drop_test_overlap(train, test, key=lambda r: r["text"])
    report("train", train, lambda r: r["text"])
    report("test", test, lambda r: r["text"])
    write_jsonl(os.path.join(a.out_dir, "train.jsonl"), train)
    write_jsonl(os.path.join(a.out_dir, "test.jsonl"), test)


# ----------------------------------------------------------------------------- emotion (CARER)

EMOTION_LABELS = {"sadness", "joy", "love", "anger", "fear", "surprise"}


def emotion_read(path):
    rows = []
    for i, line in enumerate(read_text(path).split("\n")):
        if not line:
            continue
        if i == 0 and line == "text;label_name":   # header added by the GitHub copy used
            continue
        text, label = line.rsplit(";", 1)
        if label not in EMOTION_LABELS:
            raise SystemExit("%s line %d: label %r" % (path, i + 1, label))
        rows.append({"text": text, "label": label})
    return rows


def cmd_emotion(a):
    train, val, test = emotion_read(a.train_txt), emotion_read(a.val_txt), emotion_read(a.test_txt)
    train = drop_test_overlap(train, test, key=lambda r: r["text"])
    report("train", train, lambda r: r["text"])
    report("dev", val, lambda r: r["text"])
    report("test", test, lambda r: r["text"])
    write_jsonl(os.path.join(a.out_dir, "train.jsonl"), train)
    write_jsonl(os.path.join(a.out_dir, "dev.jsonl"), val)
    write_jsonl(os.path.join(a.out_dir, "test.jsonl"), test)


# ----------------------------------------------------------------------------- SNLI

SNLI_LABELS = {"0": "entailment", "1": "neutral", "2": "contradiction"}   # HF `snli` ClassLabel order


def snli_read(path):
    recs = list(csv.reader(io.StringIO(read_text(path), newline=""), delimiter="\t"))
    if recs[0] != ["premise", "hypothesis", "label"]:
        raise SystemExit("%s: unexpected header %r" % (path, recs[0]))
    rows, dropped = [], 0
    for rec in recs[1:]:
        if len(rec) != 3:
            raise SystemExit("%s: bad record %r" % (path, rec))
        if rec[2] not in SNLI_LABELS:           # "-1" / "-" = no gold label
            dropped += 1
            continue
        rows.append({"premise": ws(rec[0]), "hypothesis": ws(rec[1]), "label": SNLI_LABELS[rec[2]]})
    print("%s: %d rows, %d without gold label dropped" % (path, len(rows), dropped))
    return rows


def cmd_snli(a):
    pool_src, test_all = snli_read(a.validation_tsv), snli_read(a.test_tsv)
    train = plain_sample(pool_src, 6000)
    test = plain_sample(test_all, 1000)
    pair = lambda r: (r["premise"], r["hypothesis"])
    train = drop_test_overlap(train, test, key=pair)
    report("train", train, pair)
    report("test", test, pair)
    write_jsonl(os.path.join(a.out_dir, "train.jsonl"), train)
    write_jsonl(os.path.join(a.out_dir, "test.jsonl"), test)


# ----------------------------------------------------------------------------- main

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("agnews")
    s.add_argument("test_csv"); s.add_argument("out_dir")
    s.add_argument("--train-csv", default=None,
                   help="original train.csv; without it the train pool comes from the unused test rows")
    s = sub.add_parser("banking77")
    s.add_argument("train_csv"); s.add_argument("test_csv"); s.add_argument("out_dir")
    s = sub.add_parser("emotion")
    s.add_argument("train_txt"); s.add_argument("val_txt"); s.add_argument("test_txt"); s.add_argument("out_dir")
    s = sub.add_parser("snli")
    s.add_argument("validation_tsv"); s.add_argument("test_tsv"); s.add_argument("out_dir")
    a = p.parse_args(argv)
    os.makedirs(a.out_dir, exist_ok=True)
    {"agnews": cmd_agnews, "banking77": cmd_banking77, "emotion": cmd_emotion, "snli": cmd_snli}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
