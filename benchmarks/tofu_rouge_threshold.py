"""Which ROUGE-L recall threshold tells a correct TOFU answer from a wrong one?

Usage: python benchmarks/tofu_rouge_threshold.py [--data ../shared/data/tofu/forget01.json]
       [--max-new-tokens 32] [--tokenizer smollm2-135m-instruct]

Scores, against each record's gold answer (:func:`~unlearnkit.evaluation.correctness
.rouge_l_recall`): its paraphrased answer (correct, other wording), its perturbed answers
(the paraphrase with the fact swapped: wrong) and the gold answer cut to its first
``max_new_tokens`` tokens (a verbatim answer as a greedy generation of that length leaves it).
Prints the share of each at or above every threshold, the best threshold between paraphrased
and perturbed answers (balanced accuracy), and in how many records the paraphrase beats every
perturbed answer. This is what chose ``correctness.DEFAULT_ROUGE_THRESHOLD``.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _machine import describe

from unlearnkit.cli import _quiet_libraries
from unlearnkit.data.adapters import load_source
from unlearnkit.evaluation.correctness import rouge_l_recall
from unlearnkit.models.loader import DEFAULT_MODEL, load_tokenizer

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tofu" / "forget01.json"


def truncated(tokenizer, text: str, n: int) -> str:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return tokenizer.decode(ids[:n], skip_special_tokens=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--tokenizer", default=DEFAULT_MODEL)
    args = parser.parse_args()
    _quiet_libraries()
    records = [r for r in load_source("tofu", args.data, split="forget")
               if r.paraphrased_answer and r.perturbed_answers]
    tok = load_tokenizer(args.tokenizer)
    para = np.array([rouge_l_recall(r.paraphrased_answer, r.answer) for r in records])
    pert_by = [[rouge_l_recall(p, r.answer) for p in r.perturbed_answers] for r in records]
    pert = np.array([v for row in pert_by for v in row])
    cut = np.array([rouge_l_recall(truncated(tok, r.answer, args.max_new_tokens), r.answer)
                    for r in records])
    print(f"machine: {describe()}\n{args.data}: {len(records)} records, {len(pert)} perturbed "
          f"answers; gold cut to {args.max_new_tokens} tokens of {args.tokenizer}")
    for name, v in (("paraphrased", para), ("perturbed", pert), ("gold cut", cut)):
        print(f"{name:>12}: min {v.min():.3f}  median {np.median(v):.3f}  max {v.max():.3f}")
    print("threshold | gold cut >= t | paraphrased >= t | perturbed >= t")
    best = (0.0, 0.0)
    for t in np.round(np.arange(0.2, 0.851, 0.05), 2):
        balanced = ((para >= t).mean() + (pert < t).mean()) / 2
        best = max(best, (balanced, t))
        print(f"{t:9.2f} | {(cut >= t).mean():13.1%} | {(para >= t).mean():16.1%} | "
              f"{(pert >= t).mean():14.1%}")
    wins = sum(p > max(row) for p, row in zip(para, pert_by, strict=True))
    print(f"best paraphrased-vs-perturbed threshold: {best[1]:.2f} (balanced accuracy "
          f"{best[0]:.1%}); paraphrase above every perturbed answer in {wins} of {len(records)} "
          f"records; every perturbed answer below {pert.max():.3f}")


if __name__ == "__main__":
    main()
