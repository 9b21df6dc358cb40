"""Normalised containment: does a generation state the fact?"""

from __future__ import annotations

import re
import unicodedata

_PUNCT = re.compile(r"[^\w\s]")


def normalize(text: str) -> str:
    """Lower-case, strip accents and punctuation, collapse whitespace."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def contains_answer(generation: str, targets: list[str], answer: str | None = None) -> bool:
    """True when any target (or, without targets, the whole answer) appears as whole words."""
    refs = targets or ([answer] if answer else [])
    gen = f" {normalize(generation)} "
    return any(f" {normalize(ref)} " in gen for ref in refs if normalize(ref))
