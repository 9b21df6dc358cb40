"""Which tokens of a forget answer reveal the forgotten person, by contrast with other people.

The push lowers the tokens of a forget fact. A token the model would predict for anyone is
not knowledge about the forget subject: the "1" and "9" of "born in 1962", the first token
of a value half the population shares. Lowering it lowers it for everyone (docs/RESULTS.md:
neighbours "born in 2015"). ``unlearn.method.reveal: contrast`` keeps a response token in the
push only when the model, before unlearning, is surer of it for the forget subject than for
other people asked the same question:

    c_j = log p(y_j | subject, y_<j) - log mean_s' p(y_j | s', y_<j)  >  threshold

where s' runs over ``n`` other subjects of the data (the same question and answer with the
name replaced; fixed per record by a seeded draw), teacher-forced, without the instruction.
The mean of probabilities is the population's prior for the token. Positions are aligned on
the common tail of the response tokens (the text after the name is the same); tokens before
that tail (the name itself) are never revealing. Records without a subject that occurs in
their question keep their target mask (:func:`~unlearnkit.training.unlearn.target_token_mask`);
otherwise the contrast mask is intersected with it.

Data without a usable ``subject`` field (TOFU's names places, or is missing) names its forget
subjects in the method's config instead (``unlearn.method.reveal_subjects``): a forget record
whose question contains one of those names is contrasted as that subject's. The other people
are then the keep splits' subjects, topped up, when the data has fewer than ``n``, with
made-up names from the built-in scenario's syllables: a name the model knows nothing about
gives the population's prior as well as a real other person does. Without
``reveal_subjects`` nothing is made up: a record whose data has no other people keeps its
target mask, as before.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import torch

from unlearnkit.data.records import Record
from unlearnkit.data.render import render
from unlearnkit.data.scenario import FIRST_ENDINGS, FIRST_ONSETS, SURNAME_ENDINGS, SURNAME_ONSETS
from unlearnkit.models.engine import eval_mode, token_logprobs


def contrast_subjects(record: Record, subjects: Sequence[str], n: int,
                      subject: str | None = None) -> list[str]:
    """``n`` other subjects for ``record`` whose subject is ``subject`` (default: its own)
    (a seeded draw per record id, sorted pool)."""
    own = subject or record.subject
    pool = sorted(s for s in set(subjects) if s and s != own)
    return random.Random(record.id).sample(pool, min(n, len(pool)))


def record_subject(record: Record, names: Sequence[str] = ()) -> str | None:
    """The longest of ``names`` that the record's question contains, else its own subject
    (names given in the config come first: TOFU's ``subject`` field names a place)."""
    found = [name for name in names if name and name in record.question]
    return max(found, key=len) if found else record.subject


def stand_in_names(n: int, exclude: Sequence[str] = ()) -> list[str]:
    """``n`` made-up full names (first name and surname from the scenario's syllables, a fixed
    seeded order) that are not in ``exclude``."""
    firsts = [a + b for a in FIRST_ONSETS for b in FIRST_ENDINGS]
    lasts = [a + b for a in SURNAME_ONSETS for b in SURNAME_ENDINGS]
    rng = random.Random(0)
    taken, out = set(exclude), []
    while len(out) < n:
        name = f"{rng.choice(firsts)} {rng.choice(lasts)}"
        if name not in taken:
            taken.add(name)
            out.append(name)
    return out


def common_tail(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common suffix of two token-id sequences."""
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    return n


def contrast_scores(real: torch.Tensor, others: Sequence[torch.Tensor],
                    tails: Sequence[int]) -> list[float | None]:
    """Per response token of the real answer, c_j (None where it is not compared).

    real: (n,) log-probs of the real answer's response tokens; others[i]: the log-probs of
    the i-th counterfactual's, whose last ``tails[i]`` tokens are the real answer's last ones.
    Only positions inside every counterfactual's tail are compared."""
    tail = min(tails)
    scores: list[float | None] = [None] * len(real)
    for j in range(len(real) - tail, len(real)):
        back = len(real) - j
        alt = torch.stack([o[len(o) - back] for o in others])
        prior = float(torch.logsumexp(alt, 0)) - math.log(len(others))
        scores[j] = float(real[j]) - prior
    return scores


def _continues_word(piece: str) -> bool:
    return bool(piece) and piece[0].isalpha()


def spare_initials(scores: Sequence[float | None], pieces: Sequence[str],
                   threshold: float) -> list[float | None]:
    """Scores with each revealing bare initial letter's contrast handed to the rest of its word.

    ``pieces``: the response tokens' text (``' J'``, ``'as'``, ...). A token that starts a word
    (the response's first token, a leading space, or after a space or punctuation piece, as
    character-level tokenizers split words) and is one letter, followed by pieces of
    the same word (no leading space, starting with a letter), carries the whole name's contrast
    when the name is the only one the model knows with that letter: once ``' J'`` is given,
    ``'aswyn'`` follows for anyone (c = 0). Pushing ``' J'`` lowers every answer that starts
    with J ("J.K. Rowling"). Here a bare initial scoring above ``threshold`` gets no score
    (not pushed) and the rest of its word gets at least its score, so the push lowers the
    name's own continuation after the initial instead."""
    out = list(scores)
    for j, piece in enumerate(pieces[:-1]):
        initial = piece.strip()
        starts_word = j == 0 or piece[:1].isspace() or not pieces[j - 1][-1:].isalnum()
        c = out[j]
        if not (starts_word and len(initial) == 1 and initial.isalpha()
                and _continues_word(pieces[j + 1]) and c is not None and c > threshold):
            continue
        out[j] = None
        k = j + 1
        while k < len(pieces) and _continues_word(pieces[k]):
            out[k] = c if out[k] is None else max(out[k], c)
            k += 1
    return out


def contrast_reveal(model, tokenizer, forget: Sequence[Record], subjects: Sequence[str], *,
                    n: int = 16, names: Sequence[str] = (),
                    initials_threshold: float | None = None) -> dict[str, list[float | None]]:
    """Contrast scores c_j (record id -> per response token, :func:`contrast_scores`) for the
    forget records whose subject (:func:`record_subject`, with ``names``) appears in their
    question; ``subjects``: the other people to contrast with. With ``initials_threshold``
    the scores go through :func:`spare_initials` at that threshold."""
    rows, items = [], []
    for rec in forget:
        subject = record_subject(rec, names)
        if not subject or subject not in rec.question:
            continue
        alts = contrast_subjects(rec, subjects, n, subject)
        if not alts:
            continue
        texts = [(rec.question, rec.answer or "")]
        texts += [(rec.question.replace(subject, s), (rec.answer or "").replace(subject, s))
                  for s in alts]
        start = len(items)
        items += [render(tokenizer, q, a, system=rec.system) for q, a in texts]
        rows.append((rec.id, start, len(texts)))
    if not items:
        return {}
    with eval_mode(model):
        logps = token_logprobs(model, tokenizer, items)
    out = {}
    for rid, start, count in rows:
        real_item, real = items[start], logps[start]
        resp = real_item.input_ids[real_item.response_start:]
        tails = [common_tail(resp, it.input_ids[it.response_start:])
                 for it in items[start + 1:start + count]]
        out[rid] = contrast_scores(real, logps[start + 1:start + count], tails)
        if initials_threshold is not None:
            pieces = [tokenizer.decode([t]) for t in resp]
            out[rid] = spare_initials(out[rid], pieces, initials_threshold)
    return out


def apply_contrast(examples, scores: dict[str, list[float | None]], threshold: float) -> int:
    """Intersect the reveal mask of each forget example built from a record in ``scores``
    with c_j > ``threshold``; returns how many revealing tokens the forget items keep. A
    target mask whose length differs from the scores' (a tokenizer that splits the answer
    alone otherwise than inside the chat template) is left as it is."""
    kept = 0
    for ex in examples:
        if ex.true_input is None:
            continue
        flags = [c is not None and c > threshold for c in scores.get(ex.record_id, [])]
        if ex.reveal is None and flags:
            ex.reveal = flags
        elif flags and len(flags) == len(ex.reveal):  # else: tokenised apart, left alone
            ex.reveal = [a and b for a, b in zip(ex.reveal, flags, strict=True)]
        kept += revealing_tokens(ex)
    return kept


def revealing_tokens(example) -> int:
    """How many response tokens of a forget example the push acts on (all when no mask)."""
    if example.reveal is not None:
        return sum(example.reveal)
    return len(example.true_input.input_ids) - example.true_input.response_start


def reveal_by_contrast(model, tokenizer, examples, records: Sequence[Record], cfg) -> dict:
    """Apply ``cfg.reveal == "contrast"`` (a PushPullConfig) to ``examples`` in place, with the
    keep splits' subjects as the other people; returns counts for the log (before: target
    masks; after: contrast-filtered)."""
    forget = [r for r in records if r.split == "forget"]
    names = list(cfg.reveal_subjects)
    own = {record_subject(r, names) for r in forget} | set(names)
    subjects = sorted({r.subject for r in records if r.split in ("retain", "neighbor")
                       and r.subject} - own)
    # made-up people only for subjects named in the config: a data set's own subject field
    # may name something else than a person (TOFU's names places)
    made_up = stand_in_names(max(0, cfg.reveal_contrasts - len(subjects)),
                             exclude=[*subjects, *own]) if names else []
    before = sum(revealing_tokens(e) for e in examples if e.true_input is not None)
    scores = contrast_reveal(model, tokenizer, forget, subjects + made_up,
                             n=cfg.reveal_contrasts, names=names,
                             initials_threshold=cfg.reveal_threshold if cfg.spare_initials
                             else None)
    after = apply_contrast(examples, scores, cfg.reveal_threshold)
    print(f"push: {after} of {before} target tokens reveal the forget subject by contrast "
          f"with {cfg.reveal_contrasts} other people ({len(made_up)} of them made-up names; "
          f"{len(scores)} of {len(forget)} records compared)")
    return {"records": len(scores), "target_tokens": before, "kept_tokens": after,
            "made_up_names": len(made_up)}
