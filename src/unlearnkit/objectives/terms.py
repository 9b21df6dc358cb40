"""A step's forget term: the part of its loss that removes the forget set's knowledge.

A method's step function returns one loss; ``optim.sam_scope: forget`` (Fan et al. 2025,
:mod:`unlearnkit.training.loop`) needs the part of it that is the forget term, apart from the
terms that keep what should stay. The step marks its loss with that part
(:func:`with_forget_term`) and the loop reads it back (:func:`forget_term`).
"""

from __future__ import annotations

import torch

_FORGET_TERM = "_unlearnkit_forget_term"


def with_forget_term(total: torch.Tensor, forget: torch.Tensor) -> torch.Tensor:
    """``total`` (a step's loss), marked with the part of it that is the method's forget term
    (what removes the forget set's knowledge; the rest keeps what should stay), for
    ``optim.sam_scope: forget``. The mark is an attribute of that tensor object: a step
    function returns ``with_forget_term(total, forget)`` itself."""
    setattr(total, _FORGET_TERM, forget)
    return total


def forget_term(loss: torch.Tensor) -> torch.Tensor | None:
    """The forget term :func:`with_forget_term` marked ``loss`` with; None when unmarked."""
    return getattr(loss, _FORGET_TERM, None)
