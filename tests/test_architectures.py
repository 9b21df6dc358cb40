"""Other model families than Llama (Mistral, Qwen, Gemma, Phi-3, OLMo, GPT-NeoX, GPT-2): the
parts that read a model's modules by name or type, on tiny random models (offline, seconds)."""

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from unlearnkit.config import from_dict
from unlearnkit.data.scenario import build_scenario
from unlearnkit.data.standardize import write_dataset
from unlearnkit.errors import UnlearnError
from unlearnkit.evaluation.attacks.logit_lens import lens_input, logit_lens_ranks
from unlearnkit.evaluation.attacks.quantize import quantize_rtn, quantized_copy
from unlearnkit.models.lora import LoraSettings, apply_lora, decoder_layers
from unlearnkit.models.tiny import OTHER_FAMILIES, save_folder, tiny_model, tiny_other
from unlearnkit.pipeline.run import RunConfig, run

pytestmark = pytest.mark.usefixtures("one_thread")
FAMILIES = sorted(OTHER_FAMILIES)
# where each layout keeps the norm after its last block (written out here, not searched for)
FINAL_NORM = {"gpt_neox": "gpt_neox.final_layer_norm", "gpt2": "transformer.ln_f"}


def build(family, tok, seed=0):
    return tiny_model(len(tok), seed=seed) if family == "llama" else \
        tiny_other(family, len(tok), seed=seed)


def forget_records(n=3):
    people = build_scenario(n_people=6, n_forget=1, neighbors_per_forget=1).records
    return [r for r in people if r.split == "forget"][:n]


@pytest.mark.parametrize("family", ["llama", *FAMILIES])
def test_the_logit_lens_decodes_each_blocks_output_through_the_final_norm(family, tok):
    model = build(family, tok)
    records = forget_records()
    norm = model.get_submodule(FINAL_NORM.get(family, "model.norm"))
    head = model.get_output_embeddings()
    seen = []
    hooks = [block.register_forward_hook(
        lambda _m, _i, out: seen.append(out[0] if isinstance(out, tuple) else out))
        for block in decoder_layers(model)]
    expected = []
    with torch.no_grad():
        for record in records:  # one at a time, so no padding is involved
            rendered, where = lens_input(tok, record)
            seen.clear()
            logits = model(input_ids=torch.tensor([rendered.input_ids])).logits[0, where - 1]
            target = rendered.input_ids[where]
            rows = [head(norm(h[0, where - 1])) for h in seen[:-1]] + [logits]
            expected.append([int((row > row[target]).sum()) for row in rows])
    for hook in hooks:
        hook.remove()
    got = logit_lens_ranks(model, tok, records)
    assert got == expected
    assert len(got[0]) == 2 and any(rank > 0 for ranks in got for rank in ranks)


def test_the_logit_lens_refuses_a_model_without_a_final_norm(tok):
    model = tiny_model(len(tok))
    model.model.norm = nn.Identity()
    model.model.final_layer_norm = nn.LayerNorm(64)  # two candidates: which one is unclear
    with pytest.raises(UnlearnError, match="no such norm: drop 'logit_lens'"):
        logit_lens_ranks(model, tok, forget_records(1))


@pytest.mark.parametrize("family", FAMILIES)
def test_quantisation_rounds_every_linear_layer_per_output_channel(family, tok):
    from transformers.pytorch_utils import Conv1D

    model = build(family, tok)
    twin = quantized_copy(model, 4)
    before = dict(model.named_modules())
    linear = [(name, m) for name, m in twin.named_modules()
              if isinstance(m, (nn.Linear, Conv1D)) and m.weight is not
              twin.get_output_embeddings().weight]
    assert len(linear) >= 2 * 4  # at least four projections per block
    for name, module in linear:
        original = before[name].weight.detach()
        assert not torch.equal(module.weight.detach(), original), name
        # output channels are rows of nn.Linear's weight and columns of Conv1D's
        weight = module.weight.detach()
        rows = weight.t() if isinstance(module, Conv1D) else weight
        source = original.t() if isinstance(module, Conv1D) else original
        for row, src in zip(rows, source, strict=True):
            assert len(row.unique()) <= 15  # the symmetric 4-bit grid [-7, 7]
            assert row.abs().max() == pytest.approx(float(src.abs().max()))
        torch.testing.assert_close(rows, quantize_rtn(source, 4))
    torch.testing.assert_close(twin.get_input_embeddings().weight,
                               model.get_input_embeddings().weight)


def test_quantisation_refuses_a_model_without_linear_layers():
    model = nn.Sequential(nn.Embedding(4, 4))
    model.get_input_embeddings = lambda: model[0]
    model.get_output_embeddings = lambda: None
    with pytest.raises(UnlearnError, match="no linear layer to quantise"):
        quantized_copy(model, 8)


@pytest.mark.parametrize("family", ["llama", *FAMILIES])
def test_default_lora_adapts_every_linear_layer_of_the_blocks(family, tok):
    from transformers.pytorch_utils import Conv1D

    model = build(family, tok)
    blocks = decoder_layers(model)
    wanted = sum(isinstance(m, (nn.Linear, Conv1D)) for m in blocks.modules())
    wrapped = apply_lora(model, LoraSettings(rank=2))
    adapted = [name for name, _ in wrapped.named_modules() if name.endswith(".lora_A")]
    assert len(adapted) == wanted
    trainable = [n for n, p in wrapped.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


@pytest.mark.parametrize("family", ["llama", *FAMILIES])
def test_lora_from_a_block_up_leaves_the_blocks_below_without_adapters(family, tok):
    wrapped = apply_lora(build(family, tok), LoraSettings(rank=2), first_layer=1)
    blocks = decoder_layers(wrapped)
    assert not any("lora_" in n for n, _ in blocks[0].named_parameters())
    assert any("lora_" in n for n, _ in blocks[1].named_parameters())


def test_lora_names_the_user_gives_are_checked(tok):
    with pytest.raises(UnlearnError, match=r"lora.target_modules \['q_proj'\] are not in"):
        apply_lora(tiny_other("phi3", len(tok)), LoraSettings(rank=2, target_modules=["q_proj",
                                                                                    "o_proj"]))


@pytest.mark.parametrize(("family", "settings"), [
    ("gpt_neox", {"train_only": {"layers": [1], "modules": ["mlp"]}}),
    ("gpt2", {"lora": {"rank": 2}}),
    ("phi3", {"lora": {"rank": 2}}),
    ("gemma2", {"train_only": {"layers": [1], "modules": ["mlp"]}}),
    ("qwen3", {"method": "rmu", "baseline": {"layer": 1, "update_layers": [1]}}),
])
def test_a_run_on_another_family_trains_and_survives_every_model_reading_attack(
        family, settings, tok, tmp_path, cache_dir):
    people = build_scenario(n_people=6, n_forget=1, neighbors_per_forget=1).records
    records = [r for split in ("forget", "retain", "neighbor")
               for r in [x for x in people if x.split == split][:3]]
    dataset = str(write_dataset(records, tmp_path / "dataset", []))
    folder = save_folder(tmp_path / family, build(family, tok), tok)
    out = tmp_path / "run"
    cfg = from_dict(RunConfig, {
        "max_new_tokens": 4, "eval_batch_size": 64, "report": False, "teacher_report": False,
        "output": str(out), "attacks": ["prefill", "logit_lens", "quantize_4bit", "relearn"],
        "attack_options": {"relearn": {"lrs": [1e-3]}},
        "unlearn": {"mix": {"forget": 1, "retain": 1, "neighbor": 1, "general": 0, "steps": 2},
                    "teacher": {"top_k": 4}, "method": {"top_m": 4}},
        "data": {"kind": "dataset", "path": dataset, "model": str(folder)}, **settings})
    run(cfg)
    after = json.loads((out / "results.json").read_text())["results"]["after"]
    assert list(after["attacks"]) == ["prefill", "logit_lens", "quantize_4bit", "relearn"]
    assert after["attacks"]["logit_lens"]["n"] == 3
    saved = json.loads((out / "model" / "config.json").read_text())
    assert saved["model_type"] == build(family, tok).config.model_type


@pytest.mark.parametrize("family", ["gpt2", "phi3"])
def test_records_injected_into_another_family_then_unlearned(family, tok, tmp_path, cache_dir):
    people = build_scenario(n_people=6, n_forget=1, neighbors_per_forget=1).records
    records = [r for split in ("forget", "retain") for r in
               [x for x in people if x.split == split][:2]]
    dataset = str(write_dataset(records, tmp_path / "dataset", []))
    folder = save_folder(tmp_path / family, build(family, tok), tok)
    out = tmp_path / "run"
    payload = run(from_dict(RunConfig, {
        "max_new_tokens": 4, "eval_batch_size": 64, "report": False, "teacher_report": False,
        "output": str(out), "method": "npo",
        "unlearn": {"mix": {"forget": 1, "retain": 1, "neighbor": 0, "general": 0, "steps": 2}},
        "data": {"kind": "inject", "path": dataset, "model": str(folder),
                 "inject": {"epochs": 1, "batch_size": 2}}}))
    assert {"before", "after", "oracle"} <= set(payload["models"])
    for variant in ("before", "oracle"):
        saved = json.loads((Path(payload["models"][variant]) / "config.json").read_text())
        assert saved["model_type"] == build(family, tok).config.model_type
    results = json.loads((out / "results.json").read_text())["results"]
    assert {"before", "after", "oracle"} <= set(results)


@pytest.mark.parametrize("family", ["gpt2", "gpt_neox", "gemma3"])
def test_diagnose_measures_the_last_block_of_another_family(family, tok, tmp_path, cache_dir,
                                                            capsys):
    from test_diagnose import tiny_args
    from unlearnkit.cli import main

    model = build(family, tok)
    folder = save_folder(tmp_path / family, model, tok)
    out = tmp_path / "diag"
    assert main(["diagnose", *tiny_args(folder, out)]) == 0
    diag = json.loads((out / "diagnose.json").read_text())
    last = decoder_layers(model)[-1]
    assert diag["parameters"]["count"] == sum(p.numel() for p in last.parameters())
    assert diag["parameters"]["tensors"] == len(list(last.parameters()))
    for cond in diag["conditions"].values():
        norms = cond["gradients"]["grad_norm"]
        assert any(v for v in norms.values()), norms  # some term reaches the last block
    assert "gradient cosines, unified" in capsys.readouterr().out
