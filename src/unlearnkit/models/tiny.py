"""A tiny random Llama and a character-level chat tokenizer, built in code for fast tests.

Nothing is downloaded: the tokenizer's vocabulary is printable ASCII plus the ChatML special
tokens, and the model is a 2-layer Llama with a 64-wide residual stream. :func:`tiny_other`
builds the same size in other families' layouts (Mistral, Qwen, Gemma, Phi-3, OLMo, GPT-NeoX,
GPT-2), to check that nothing assumes Llama's module names.
"""

from __future__ import annotations

import string

import torch

CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def tiny_tokenizer():
    """A char-level fast tokenizer with a ChatML chat template (pad ``<|endoftext|>``)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = sorted(set(string.printable))
    vocab = {tok: i for i, tok in enumerate([*SPECIALS, "<unk>", *chars])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="<unk>", pad_token="<|endoftext|>",
        eos_token="<|im_end|>", bos_token="<|im_start|>",
        additional_special_tokens=SPECIALS,
    )
    tok.chat_template = CHATML_TEMPLATE
    return tok


def tiny_model(vocab_size: int, *, seed: int = 0, layers: int = 2, hidden: int = 64):
    """A randomly initialised Llama small enough to train in milliseconds."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=1024, tie_word_embeddings=True, pad_token_id=0,
        bos_token_id=1, eos_token_id=2,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


# family -> (config class, model class, its own config keys); None: GPT-2's naming
OTHER_FAMILIES = {
    "mistral": ("MistralConfig", "MistralForCausalLM", {"num_key_value_heads": 2}),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {"num_key_value_heads": 2}),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {"num_key_value_heads": 2, "head_dim": 16}),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM", {"num_key_value_heads": 2, "head_dim": 16}),
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM",
               {"num_key_value_heads": 2, "head_dim": 16}),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", {"num_key_value_heads": 2}),
    "olmo2": ("Olmo2Config", "Olmo2ForCausalLM", {"num_key_value_heads": 2}),
    "gpt_neox": ("GPTNeoXConfig", "GPTNeoXForCausalLM", {}),
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", None),
}


def tiny_other(family: str, vocab_size: int, *, seed: int = 0, layers: int = 2,
               hidden: int = 64):
    """A random model of another family (:data:`OTHER_FAMILIES`) as small as :func:`tiny_model`."""
    import transformers

    config_name, model_name, extra = OTHER_FAMILIES[family]
    ids = {"vocab_size": vocab_size, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
    if extra is None:
        config = getattr(transformers, config_name)(n_embd=hidden, n_layer=layers, n_head=4,
                                                    n_positions=1024, **ids)
    else:
        config = getattr(transformers, config_name)(
            hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
            num_attention_heads=4, max_position_embeddings=1024, **ids, **extra)
    torch.manual_seed(seed)
    return getattr(transformers, model_name)(config).eval()


def save_folder(folder, model, tokenizer):
    """``model`` (safetensors) and ``tokenizer`` saved as a Hugging Face model folder; the
    folder."""
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder
