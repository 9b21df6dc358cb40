"""Plain-text tables of a ``diagnose.json`` (written by ``unlearn diagnose``), for the terminal
and for the HTML report's diagnostics section. No torch: reports load without it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FORGET_PAIRS = ("forget~retain", "forget~neighbor", "forget~general")
DISTANCES = ("cosine", "mmd2", "frechet")


def _num(value: Any, spec: str = "+.3f") -> str:
    return "-" if value is None else format(value, spec)


def cosine_table(grads: dict[str, Any]) -> str:
    """The cosine matrix as mean±std, with each term's mean gradient norm in the last column."""
    terms = grads["terms"]
    width = max(len(t) for t in terms) + 2
    lines = [" " * width + "".join(f"{t[:13]:>14}" for t in terms) + f"{'|grad|':>11}"]
    for i, name in enumerate(terms):
        cells = [f"{_num(m, '+.2f')}±{_num(s, '.2f')}" for m, s in
                 zip(grads["cosine_mean"][i], grads["cosine_std"][i], strict=True)]
        norm = _num(grads["grad_norm"].get(name), ".3g")
        lines.append(f"{name:<{width}}" + "".join(f"{c:>14}" for c in cells) + f"{norm:>11}")
    return "\n".join(lines)


def comparison_rows(diag: dict[str, Any]) -> list[tuple[str, list[Any]]]:
    """(label, value per condition): the gradient summary, then the forget set's distances."""
    conds = [c for c in diag["conditions"].values()]
    keys = list(dict.fromkeys(k for c in conds for k in c.get("summary", {})))
    rows = [(k, [c.get("summary", {}).get(k) for c in conds]) for k in keys]
    for layer in diag.get("layers", []):
        for pair in FORGET_PAIRS:
            for dist in DISTANCES:
                rows.append((f"layer {layer} {pair} {dist}", [
                    c.get("representations", {}).get(str(layer), {}).get(pair, {}).get(dist)
                    for c in conds]))
    return rows


def comparison_table(diag: dict[str, Any]) -> str:
    names = list(diag["conditions"])
    rows = comparison_rows(diag)
    width = max([len(label) for label, _ in rows] + [10]) + 2
    lines = [" " * width + "".join(f"{n:>12}" for n in names)]
    lines += [f"{label:<{width}}" + "".join(f"{_num(v, '.4g'):>12}" for v in values)
              for label, values in rows]
    return "\n".join(lines)


def tables(diag: dict[str, Any]) -> dict[str, str]:
    """Title -> table: one cosine matrix per condition, then the conditions side by side."""
    out = {}
    for name, cond in diag["conditions"].items():
        if "gradients" in cond:
            n = cond["gradients"]["batches"]
            out[f"gradient cosines, {name} forget set (mean±std over {n} batches)"] = (
                cosine_table(cond["gradients"]))
        else:
            out[f"{name} forget set"] = f"skipped: {cond.get('skipped', '')}"
    out["unified vs raw forget set"] = comparison_table(diag)
    return out


def report_view(diag: dict[str, Any]) -> dict[str, Any]:
    """What the HTML report's diagnostics section shows for a diagnose.json."""
    params = diag.get("parameters", {})
    return {"diagnose: model": diag.get("model", ""),
            "diagnose: parameters": f"{params.get('count')} in the upper "
                                    f"{params.get('grad_blocks')} blocks (0: all)",
            "diagnose: items per set": ", ".join(f"{k} {v}"
                                                 for k, v in diag.get("sets", {}).items()),
            **tables(diag)}


def load_beside(results_path: Path) -> dict[str, Any] | None:
    """The report view of the diagnose.json in the folder of ``results_path``, if any."""
    path = results_path.parent / "diagnose.json"
    if not path.is_file():
        return None
    try:
        diag = json.loads(path.read_text(encoding="utf-8"))
        return report_view(diag)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {"diagnose.json": f"{path} could not be read"}
