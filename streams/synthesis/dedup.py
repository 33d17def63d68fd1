"""Exact and near-duplicate task descriptions: normalised text, word-bigram MinHash, LSH bands.

Every task already produced and every candidate accepted goes in; a candidate is an exact
duplicate when its normalised text is one already there, a near duplicate when the Jaccard
similarity of its word bigrams to one already there is at least the threshold (estimated from
128-hash MinHash signatures; LSH bands find the few texts worth comparing, so a check costs
about the same with ten or a million tasks in). Everything is deterministic across processes
(SHAKE-128, no seeds): a restarted synthesizer decides exactly as the one before it did.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import struct
import unicodedata
from collections import defaultdict
from dataclasses import dataclass

PERMUTATIONS = 128
# 16 bands of 8 rows: two texts become candidates when all 8 hashes of one band agree. A pair
# 0.8 similar is found with a probability of 95% (0.85: 99.6%, 0.9: all but 1e-6), while texts
# made from one template, 0.5-0.7 alike, rarely share a band: the work of a check stays flat as
# the index grows (with 4-row bands they all did, and a check compared thousands).
BANDS = 16
ROWS = PERMUTATIONS // BANDS
UNPACK = f"<{PERMUTATIONS}I"
WORD = re.compile(r"\w+")


def normalise(text: str) -> str:
    """Case, width, accents of compatibility forms, punctuation and spacing do not matter."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(WORD.findall(text))


def shingles(text: str) -> set[str]:
    """Word bigrams of the normalised text (the whole text for one word)."""
    words = normalise(text).split()
    if len(words) < 2:
        return {" ".join(words)}
    return {f"{a} {b}" for a, b in itertools.pairwise(words)}


def signature(parts: set[str]) -> tuple[int, ...]:
    """MinHash: per hash function, the least hash over the parts. The 128 functions are the 128
    32-bit words of one SHAKE-128 output per part (independent, and the same in every process),
    so a signature costs a hash per part and C-level minima, not 128 Python hashes per part."""
    rows = [
        struct.unpack(UNPACK, hashlib.shake_128(p.encode()).digest(4 * PERMUTATIONS)) for p in parts
    ]
    return tuple(map(min, *rows)) if len(rows) > 1 else rows[0]


def packed(sig: tuple[int, ...]) -> int:
    """The lowest byte of each hash, as one integer (b-bit MinHash, b = 8): two texts are
    compared by one XOR and a count of zero bytes, in C, instead of 128 Python comparisons."""
    return int.from_bytes(bytes(h & 0xFF for h in sig), "big")


def similarity(one: int, two: int) -> float:
    """The Jaccard similarity two packed signatures estimate (unequal hashes agree on their
    lowest byte one time in 256: corrected for)."""
    agree = (one ^ two).to_bytes(PERMUTATIONS, "big").count(0) / PERMUTATIONS
    return max(0.0, (agree - 1 / 256) / (1 - 1 / 256))


@dataclass(frozen=True)
class Duplicate:
    kind: str  # "exact" | "near"
    of: str  # the id of the text it duplicates
    similarity: float


class DedupIndex:
    """Texts by id; `check` says whether a new text duplicates one of them."""

    def __init__(self, threshold: float = 0.8) -> None:
        if not 0 < threshold <= 1:
            raise ValueError(f"near-duplicate threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self._exact: dict[str, str] = {}  # normalised text -> id
        self._signatures: dict[str, tuple[int, ...]] = {}
        self._packed: dict[str, int] = {}
        self._texts: dict[str, str] = {}  # id -> normalised text
        self._bands: dict[tuple[int, tuple[int, ...]], set[str]] = defaultdict(set)
        self._last: tuple[str, str, tuple[int, ...]] | None = None  # check's work, for add

    def __len__(self) -> int:
        return len(self._texts)

    def __contains__(self, key: str) -> bool:
        return key in self._texts

    def _sign(self, text: str) -> tuple[str, tuple[int, ...]]:
        if self._last is not None and self._last[0] == text:
            return self._last[1], self._last[2]
        norm = normalise(text)
        sig = signature(shingles(text))
        self._last = (text, norm, sig)
        return norm, sig

    def check(self, text: str) -> Duplicate | None:
        norm, sig = self._sign(text)
        if norm in self._exact:
            return Duplicate("exact", self._exact[norm], 1.0)
        best: Duplicate | None = None
        mine = packed(sig)
        for other in self._neighbours(sig):
            score = similarity(mine, self._packed[other])
            if score >= self.threshold and (best is None or score > best.similarity):
                best = Duplicate("near", other, score)
        return best

    def add(self, key: str, text: str) -> None:
        """Index `text` under `key` (a second add of the same key is ignored)."""
        if key in self._texts:
            return
        norm, sig = self._sign(text)
        self._texts[key] = norm
        self._exact.setdefault(norm, key)
        self._signatures[key] = sig
        self._packed[key] = packed(sig)
        for band in self._band_keys(sig):
            self._bands[band].add(key)

    def remove(self, key: str) -> None:
        """Forget `key` (a candidate that was reserved, then dropped by a later filter)."""
        norm = self._texts.pop(key, None)
        if norm is None:
            return
        if self._exact.get(norm) == key:
            del self._exact[norm]
            same = next((k for k, t in self._texts.items() if t == norm), None)  # rare: a scan
            if same is not None:
                self._exact[norm] = same
        del self._packed[key]
        for band in self._band_keys(self._signatures.pop(key)):
            self._bands[band].discard(key)
            if not self._bands[band]:
                del self._bands[band]

    def _neighbours(self, sig: tuple[int, ...]) -> set[str]:
        found: set[str] = set()
        for band in self._band_keys(sig):
            found.update(self._bands.get(band, ()))
        return found

    @staticmethod
    def _band_keys(sig: tuple[int, ...]) -> list[tuple[int, tuple[int, ...]]]:
        return [(b, sig[b * ROWS : (b + 1) * ROWS]) for b in range(BANDS)]
