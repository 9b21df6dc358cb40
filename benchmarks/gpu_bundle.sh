#!/usr/bin/env bash
# What benchmarks/gpu_preset.py needs on a GPU machine that reaches neither the hub nor a
# package index, gathered here into .gpu/ (git-ignored) and runs/data/tofu:
#   .gpu/wheels     the project's dependencies such a machine may lack (pure-Python wheels:
#                   rouge-score, built here since PyPI has only its source, and nltk, which
#                   it imports); torch, transformers, accelerate, peft, safetensors, scipy,
#                   matplotlib, jinja2, tensorboard, pyyaml and tqdm are taken as found there
#   .gpu/tokenizer  the default model's tokenizer (for the random-weight model)
#   runs/data/tofu  TOFU standardised (configs/data-tofu.yaml; the preset's data.path)
# Usage: bash benchmarks/gpu_bundle.sh   (after `make install`; about 2 MB in all)
# Then, on the GPU machine, from the project root with .gpu and runs/data/tofu beside it:
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/wheels/*.whl &&
#   PYTHONPATH=/tmp/site:src python3 benchmarks/gpu_preset.py --tokenizer .gpu/tokenizer
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
test -x $BIN/unlearn || { echo "run 'make install' first" >&2; exit 2; }
rm -rf .gpu && mkdir -p .gpu/wheels .gpu/tokenizer
$BIN/python -m pip wheel --quiet --no-deps -w .gpu/wheels \
    "rouge-score==$($BIN/python -c 'import importlib.metadata as m; print(m.version("rouge-score"))')" \
    "nltk==$($BIN/python -c 'import importlib.metadata as m; print(m.version("nltk"))')"
folder=$($BIN/python -c 'from unlearnkit.models.loader import DEFAULT_MODEL, resolve_model_path
print(resolve_model_path(DEFAULT_MODEL))')
cp "$folder"/tokenizer.json "$folder"/tokenizer_config.json .gpu/tokenizer/
cp "$folder"/chat_template.jinja .gpu/tokenizer/ 2>/dev/null || true
$BIN/unlearn data standardize configs/data-tofu.yaml
du -sh .gpu runs/data/tofu
