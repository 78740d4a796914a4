"""Copies among short texts: exact (same words), near (word 3-gram Jaccard, MinHash LSH) and, for
short texts, fuzzy (rapidfuzz ratio); the filter's duplicate and contamination checks."""

from __future__ import annotations

import re
from typing import Protocol


def _norm(text: str) -> str:
    """Lowercase words only: 'The film , is GREAT!' -> 'the film is great'."""
    return " ".join(re.findall(r"\w+", text.lower()))


def _shingles(norm: str, n: int = 3) -> set[str]:
    words = norm.split()
    return {" ".join(words[i : i + n]) for i in range(max(1, len(words) - n + 1))}


# Longer texts have enough 3-grams for Jaccard alone; a ratio of 90 needs lengths within a fifth.
_FUZZY_WORDS = 30


class CopySettings(Protocol):
    """What NearIndex reads of the filter's settings."""

    near_duplicate_threshold: float
    fuzzy_ratio: float | None


class NearIndex:
    """Texts seen so far. `match` says whether a text copies one of them: 'exact' (same words),
    'near' (3-gram Jaccard over the threshold, found by MinHash LSH and checked on the shingles,
    or a word-level rapidfuzz ratio over `fuzzy_ratio` between short texts), or None."""

    def __init__(self, settings: CopySettings, num_perm: int = 64):
        from datasketch import MinHash, MinHashLSH

        self._empty = MinHash(num_perm=num_perm, seed=1)  # copied per text: permutations are made once
        self.threshold, self.ratio = settings.near_duplicate_threshold, settings.fuzzy_ratio
        self.lsh = MinHashLSH(threshold=self.threshold, num_perm=num_perm)
        self.exact: set[str] = set()
        self.sets: list[set[str]] = []
        self.vocab: dict[str, str] = {}
        self.short: list[str] = []  # short texts, one character per word, for the fuzzy check
        self._last: tuple = (None, None)

    def match(self, text: str) -> str | None:
        from rapidfuzz import fuzz, process

        norm = _norm(text)
        if norm in self.exact:
            return "exact"
        shingles, minhash, coded = self._encode(norm)
        for i in self.lsh.query(minhash):
            if len(shingles & self.sets[i]) / len(shingles | self.sets[i]) >= self.threshold:
                return "near"
        if self.ratio and len(coded) < _FUZZY_WORDS:
            if process.extractOne(coded, self.short, scorer=fuzz.ratio, score_cutoff=self.ratio):
                return "near"
        return None

    def add(self, text: str) -> None:
        norm = _norm(text)
        if norm not in self.exact:
            shingles, minhash, coded = self._encode(norm)
            self.exact.add(norm)
            self.lsh.insert(len(self.sets), minhash)
            self.sets.append(shingles)
            if len(coded) < _FUZZY_WORDS + 5:
                self.short.append(coded)

    def _encode(self, norm: str):
        """(3-gram shingles, their MinHash, the text with one character per word); the last one is
        kept, as `add` usually follows `match` on the same text."""
        if self._last[0] != norm:
            shingles = _shingles(norm)
            minhash = self._empty.copy()
            minhash.update_batch([s.encode() for s in sorted(shingles)])
            # one character per distinct word, so rapidfuzz's ratio counts words, not letters
            coded = "".join(self.vocab.setdefault(w, chr(0x10000 + len(self.vocab))) for w in norm.split())
            self._last = (norm, (shingles, minhash, coded))
        return self._last[1]
