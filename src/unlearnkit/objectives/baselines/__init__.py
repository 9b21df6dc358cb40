"""The field's unlearning baselines, one file per method (a pure loss, a config, a short step).

Importing this package imports every method module in it, and each registers itself with
``@register_baseline`` where it is defined: :data:`BASELINES` maps a name to its
:class:`~.registry.Baseline` (step factory, config class, ``prepare``, metadata). The item and
batch contract is in :mod:`.common`, the precomputed reference quantities in :mod:`.reference`.
"""

from __future__ import annotations

import importlib
import pkgutil

from unlearnkit.objectives.baselines.common import FORGET, RETAIN, Item, as_batch, build_items
from unlearnkit.objectives.baselines.registry import (
    BASELINES,
    Baseline,
    get_baseline,
    register_baseline,
)

__all__ = ["BASELINES", "FORGET", "RETAIN", "Baseline", "Item", "as_batch", "build_items",
           "get_baseline", "register_baseline"]

for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_info.name}")
