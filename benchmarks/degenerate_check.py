"""Where the degenerate-answer test's compression threshold comes from, and what it changes.

Usage: python benchmarks/degenerate_check.py [--fluent ../shared/data/tofu/retain90.json]
           [BENCH_FOLDER ...]
1. Fluent English: every ``--window``-byte window (stride 97) of the TOFU answers in
   ``--fluent``, joined by spaces, compressed as :func:`metrics.compressed_share` does; prints
   the lowest share and its quantiles. The threshold (``is_degenerate``'s ``compress_below``)
   must sit below all of them.
2. For each bench folder (``results/bench-tofu``...): per method and split, the share of
   answers of all seeds flagged by the word test alone (empty or repeated trigrams) and by
   the whole test (also the compression test), from the runs' ``results.json``.
"""

import argparse
import json
from collections import defaultdict
from pathlib import Path

from unlearnkit.evaluation.metrics import compressed_share, is_degenerate


def fluent_windows(path: Path, window: int) -> list[float]:
    text = " ".join(row["answer"] for row in json.loads(path.read_text())).encode()
    return sorted(compressed_share(text[i:i + window].decode(errors="ignore"), window=window)
                  for i in range(0, len(text) - window, 97))


def words_only(text: str) -> bool:
    """The test without its compression part (no share is below 0)."""
    return is_degenerate(text, compress_below=0.0)


def flagged(bench: Path) -> dict[tuple[str, str], list[int]]:
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for results in sorted(bench.glob("*/seed-*/results.json")):
        method = results.parent.parent.name
        for item in json.loads(results.read_text())["results"]["after"]["items"]:
            row = counts[method, item["split"]]
            row[0] += words_only(item["generation"])
            row[1] += is_degenerate(item["generation"])
            row[2] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("benches", nargs="*", type=Path)
    parser.add_argument("--fluent", type=Path, default=Path("../shared/data/tofu/retain90.json"))
    parser.add_argument("--window", type=int, default=400)
    args = parser.parse_args()
    shares = fluent_windows(args.fluent, args.window)
    q = {p: shares[int(p / 100 * (len(shares) - 1))] for p in (0.1, 1, 50)}
    print(f"fluent {args.window}-byte windows of {args.fluent}: {len(shares)}; lowest "
          f"{shares[0]:.3f}, 0.1% {q[0.1]:.3f}, 1% {q[1]:.3f}, median {q[50]:.3f}")
    for bench in args.benches:
        print(f"\n{bench}: degenerate answers, word test alone -> whole test")
        for (method, split), (old, new, n) in sorted(flagged(bench).items()):
            print(f"  {method:20s} {split:9s} n={n:4d}  {old / n:6.1%} -> {new / n:6.1%}")


if __name__ == "__main__":
    main()
