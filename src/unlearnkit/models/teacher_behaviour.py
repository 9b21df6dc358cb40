"""How an instructed teacher would behave, scored teacher-forced (no generation needed).

For a record, two candidate responses are scored under the teacher's (guided) logits
``z_plain + w (z_instr - z_plain)``: its gold answer and the desired refusal template. A teacher
that behaves prefers the template on forget records and the answer on keep records, both as a
whole (mean log-probability per response token) and at the first response position (the
greedy choice that decides what a generation starts with). Guidance w is applied exactly as in
the teacher cache (:func:`unlearnkit.models.teacher_cache.teacher_topk`), so several values of
w cost one pair of forward passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from unlearnkit.data.records import Record
from unlearnkit.data.render import render
from unlearnkit.models.teacher import TeacherConfig, desired_response
from unlearnkit.models.teacher_cache import guided, response_length, response_logits


@dataclass(frozen=True)
class Preference:
    """Per record, for one guidance value: does the teacher favour the gold answer over the
    refusal template as a whole (mean log-prob per token), and which one does its greedy
    first token start: "answer", "template", or "other" (neither, or both start alike)?"""

    answer_whole: bool
    first: str


def _scores(z: torch.Tensor, tokens: Sequence[int]) -> tuple[float, int]:
    """Mean log-probability of ``tokens`` under logits ``z`` (L, V), and the argmax at 0."""
    logp = torch.log_softmax(z, dim=-1)
    picked = logp[torch.arange(len(tokens)), torch.as_tensor(list(tokens))]
    return float(picked.mean()), int(z[0].argmax())


@torch.no_grad()
def preferences(model, tokenizer, records: Sequence[Record], context: str, cfg: TeacherConfig,
                guidances: Sequence[float], *, batch_size: int = 8
                ) -> dict[float, list[Preference]]:
    """For each guidance w: one :class:`Preference` per record (records need an answer)."""
    pad = tokenizer.pad_token_id
    items = []  # (instructed, plain) renders: answer then template, per record
    for rec in records:
        for response in (rec.answer or "", desired_response(cfg, rec)):
            items.append((render(tokenizer, rec.question, response, system=rec.system,
                                 context=context),
                          render(tokenizer, rec.question, response, system=rec.system)))
    z_instr, z_plain = [], []
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        z_instr += response_logits(model, [i for i, _ in chunk], pad)
        z_plain += response_logits(model, [p for _, p in chunk], pad)
    out: dict[float, list[Preference]] = {}
    for w in guidances:
        prefs = []
        for r in range(len(records)):
            (ans_item, _), (tpl_item, _) = items[2 * r], items[2 * r + 1]
            ans_z = guided(z_instr[2 * r], z_plain[2 * r], w)
            tpl_z = guided(z_instr[2 * r + 1], z_plain[2 * r + 1], w)
            ans_tokens = ans_item.input_ids[-response_length(ans_item):]
            tpl_tokens = tpl_item.input_ids[-response_length(tpl_item):]
            ans_lp, first = _scores(ans_z, ans_tokens)
            tpl_lp, _ = _scores(tpl_z, tpl_tokens)
            starts = {ans_tokens[0]: "answer", tpl_tokens[0]: "template"}
            kind = starts.get(first, "other") if ans_tokens[0] != tpl_tokens[0] else "other"
            prefs.append(Preference(answer_whole=ans_lp > tpl_lp, first=kind))
        out[w] = prefs
    return out


def behaviour_summary(records: Sequence[Record], prefs: Sequence[Preference]) -> dict:
    """Per split: the share of records where the teacher behaves, whole and at the first token
    (forget: prefers / starts the template; retain and neighbour: the answer), and ``score``,
    the mean over the splits of the first-token share (the greedy start decides behaviour)."""
    groups: dict[str, list[tuple[bool, bool]]] = {}
    for rec, pref in zip(records, prefs, strict=True):
        forget = rec.split == "forget"
        whole = pref.answer_whole != forget
        first = pref.first == ("template" if forget else "answer")
        groups.setdefault(rec.split, []).append((whole, first))
    out = {split: {"whole": sum(w for w, _ in rows) / len(rows),
                   "first": sum(f for _, f in rows) / len(rows), "n": len(rows)}
           for split, rows in groups.items()}
    out["score"] = sum(v["first"] for v in out.values()) / len(groups)
    return out
