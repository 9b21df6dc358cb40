"""A LoRA adapter as a folder: peft's ``adapter_config.json`` and ``adapter_model.safetensors``.

The config records the base model the adapter was trained on (``base_model_name_or_path``:
a model name, hub id or absolute folder, anything :func:`~unlearnkit.models.loader.load_model`
takes). Weights are written and read as safetensors only; a folder holding only peft's pickle
file (``adapter_model.bin``) is refused. Loading checks that every saved tensor found its
place in the base model, so an adapter of another model fails loudly instead of loading as
a partial or empty adapter.
"""

from __future__ import annotations

import json
from pathlib import Path

from unlearnkit.errors import UnlearnError
from unlearnkit.fsutil import atomic_dir

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
_BASE_KEY = "base_model_name_or_path"


def is_adapter_folder(path: str | Path) -> bool:
    """True when ``path`` is a folder with peft's ``adapter_config.json``."""
    return (Path(path) / ADAPTER_CONFIG).is_file()


def adapter_base(folder: str | Path) -> str:
    """The base model recorded in ``folder``'s adapter config (checked to be usable)."""
    folder = Path(folder)
    try:
        config = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnlearnError(f"cannot read {folder / ADAPTER_CONFIG} ({exc}); save the adapter "
                           "again or delete the folder") from None
    base = config.get(_BASE_KEY) if isinstance(config, dict) else None
    if not isinstance(base, str) or not base:
        raise UnlearnError(f"{folder / ADAPTER_CONFIG} records no base model; set "
                           f"{_BASE_KEY!r} to the model the adapter was trained from")
    if Path(base).expanduser().resolve() == folder.resolve():
        raise UnlearnError(f"{folder / ADAPTER_CONFIG} names the adapter itself as its base "
                           f"model; set {_BASE_KEY!r} to the model it was trained from")
    if not (folder / ADAPTER_WEIGHTS).is_file():
        found = ", ".join(sorted(p.name for p in folder.iterdir())) or "nothing"
        raise UnlearnError(f"adapter folder {folder} has no {ADAPTER_WEIGHTS} (it holds "
                           f"{found}); unlearnkit reads adapter weights from safetensors only: "
                           "save the adapter again with safe_serialization=True")
    return base


# what an earlier model or adapter folder holds: only such a folder is replaced by a new one
MODEL_MARKERS = ("config.json", "adapter_config.json")


def save_adapter_folder(model, target: Path, base: str) -> Path:
    """Write ``model``'s LoRA adapter (a peft model, unmerged) to ``target`` atomically,
    recording ``base`` as the model it applies to."""
    config = model.peft_config[model.active_adapter]
    recorded = config.base_model_name_or_path
    config.base_model_name_or_path = base
    try:
        with atomic_dir(target, expect=MODEL_MARKERS) as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
    finally:
        config.base_model_name_or_path = recorded
    return target


def merge_adapter(model, folder: str | Path, base: str):
    """``model`` (the loaded ``base``) with the adapter in ``folder`` applied and merged in."""
    from peft import PeftModel
    from peft.utils import get_peft_model_state_dict
    from safetensors import safe_open

    fix = (f"it was trained on another model than {base!r}; set {_BASE_KEY!r} in "
           f"{Path(folder) / ADAPTER_CONFIG} to the model it was trained from")
    try:
        peft_model = PeftModel.from_pretrained(model, str(folder))
    except (RuntimeError, ValueError, KeyError) as exc:
        why = " ".join(str(exc).split())[:300]
        raise UnlearnError(f"adapter {folder} does not fit its base model ({why}): {fix}"
                           ) from None
    with safe_open(Path(folder) / ADAPTER_WEIGHTS, "pt") as fh:
        saved = set(fh.keys())
    placed = set(get_peft_model_state_dict(peft_model))
    if saved != placed:
        odd = sorted(saved ^ placed)
        raise UnlearnError(f"adapter {folder} does not fit its base model: {len(odd)} tensors "
                           f"in one but not the other (e.g. {odd[0]}): {fix}")
    return peft_model.merge_and_unload()
