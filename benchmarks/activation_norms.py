"""Residual-stream norms of a run's injected model on the forget answers, per decoder block.

RMU's steering coefficient c is an absolute activation norm, so whether a value works depends on
the model: this prints what the forget answers' activations measure after each block (mean,
min and max norm over answer positions, the three dimensions with the largest mean |h| and the
norm without them). docs/RESULTS.md ("RMU on the default model") quotes it.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/activation_norms.py \
        --config results/tune-scenario/rmu--lr-0.016/seed-0/config.json --layers 1 3 5 7 11

``--config``: any `unlearn run` config (YAML or a run's config.json); its injected model is
read from the cache (trained first if missing).
"""

from __future__ import annotations

import argparse

import torch
from _setup import make_setup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/demo.yaml", help="an `unlearn run` config")
    parser.add_argument("--layers", type=int, nargs="+", default=[1, 3, 5, 7, 11, 15])
    parser.add_argument("--items", type=int, default=8, help="forget answers to measure")
    args = parser.parse_args()
    make_setup(tiny=False)  # quiet libraries and bars

    from unlearnkit.config import load_config
    from unlearnkit.models.engine import layer_output
    from unlearnkit.models.loader import load_model
    from unlearnkit.objectives.baselines.common import build_items, response_slice
    from unlearnkit.pipeline.run import RunConfig, prepare

    prepared = prepare(load_config(RunConfig, args.config))  # a config.json reads as YAML
    model, tokenizer = load_model(prepared.models["injected"])
    forget = [it.rendered for it in build_items(tokenizer, prepared.records)
              if it.kind == "forget"][:args.items]
    print(f"model: {prepared.models['injected']}; {len(forget)} forget answers")
    with torch.no_grad():
        for layer in args.layers:
            hidden = layer_output(model, forget, tokenizer.pad_token_id, layer).float()
            rows = torch.cat([hidden[i, response_slice(it)] for i, it in enumerate(forget)])
            norms = rows.norm(dim=-1)
            top = rows.abs().mean(0).topk(3)
            rest = rows.clone()
            rest[:, top.indices] = 0
            print(f"after block {layer}: norm mean {norms.mean():.1f} (min {norms.min():.1f}, "
                  f"max {norms.max():.1f}) over {len(norms)} positions; largest dims "
                  f"{top.indices.tolist()} (mean |h| "
                  f"{', '.join(f'{v:.1f}' for v in top.values.tolist())}); norm without them "
                  f"{rest.norm(dim=-1).mean():.1f}")


if __name__ == "__main__":
    main()
