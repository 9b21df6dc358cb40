"""Push-pull top-K logit distillation (the project's method; arXiv 2604.15482, after DUET).

Notation (docs: METHOD.md): at response position t, ``z_S(t)`` and ``z_T(t)`` are the
student's and the teacher's raw logits, ``K_T(t)`` the teacher's top-K vocabulary indices and
``tau_T(t)`` the teacher's K-th largest logit.

* Pull:  L_pull = mean_t sum_{i in K_T(t)} Huber_delta(z_S^i(t) - z_T^i(t))
* Push:  L_push = mean_t sum_{j in H(t)} relu(s_S^j(t) - s_T^{(K)}(t) + margin), where s is
  the raw logit (``push_space: logits``, METHOD.md's formula and the default), the
  log-probability (``logprobs``) or the log-odds (``logodds``), and s_T^{(K)} the teacher's
  K-th token's score: see push_loss for what each does,
  H(t) = {y(t+1)} ∪ (top-M of z_S(t) minus K_T(t)): the true next token of the forget answer
  and the student's own strongest tokens that the teacher does not rank in its top K.
  ``push_true_in_topk: false`` (an ablation) leaves out of H a true next token that the
  teacher itself ranks in its top K (e.g. the copied name in "Ada was born in ..."); by
  default, as in METHOD.md, H always holds it.
  ``push_below: alternative`` replaces the teacher's K-th score by the student's own best
  token outside H(t): relu(z_S^j(t) - max_{i not in H(t)} z_S^i(t) + margin), a difference of
  the student's logits (the alternative held fixed) that no offset meets and that asks only
  for the fact to lose its rank.

All terms are computed in fp32 and averaged over the positions where ``mask`` is true only;
a batch without such positions gives a zero loss that still carries a graph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from unlearnkit.data.render import Rendered
from unlearnkit.errors import UnlearnError
from unlearnkit.models.engine import forward_responses, layer_output, place
from unlearnkit.models.teacher_cache import TopK
from unlearnkit.objectives.nll import masked_mean, nll_loss
from unlearnkit.objectives.steer import activation_mse, adaptive_control, control_vector
from unlearnkit.objectives.terms import with_forget_term


def pull_loss(student: torch.Tensor, teacher_values: torch.Tensor,
              teacher_indices: torch.Tensor, mask: torch.Tensor, *, delta: float = 1.0,
              first_only: bool = False, groups: torch.Tensor | None = None,
              row_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Huber distance on the teacher's top-K logits.

    student: (B, T, V) raw logits; teacher_values, teacher_indices: (B, T, K); mask: (B, T).
    ``first_only`` keeps only each row's first masked position (DUET's setting). ``groups``
    (B,) integers: the mean is taken per group of rows, then over the groups that have masked
    positions, so each group weighs the same whatever its number of rows and positions.
    ``row_weights`` (B,) scales each row's per-position distances inside the same mean (the
    positions still count once each): all ones is the plain loss.
    """
    if first_only:
        mask = first_position(mask)
    picked = student.float().gather(-1, teacher_indices)
    per_pos = F.huber_loss(picked, teacher_values.float(), delta=delta, reduction="none").sum(-1)
    if row_weights is not None:
        per_pos = per_pos * row_weights.to(per_pos)[:, None]
    if groups is None:
        return masked_mean(per_pos, mask)
    means = [masked_mean(per_pos[groups == g], mask[groups == g]) for g in groups.unique()
             if mask[groups == g].any()]
    return torch.stack(means).mean() if means else masked_mean(per_pos, mask)


def first_position(mask: torch.Tensor) -> torch.Tensor:
    """Keep only the first true entry of each row of a (B, T) mask."""
    first = mask.long().cumsum(-1) == 1
    return first & mask.bool()


def push_loss(student: torch.Tensor, teacher_indices: torch.Tensor, tau: torch.Tensor,
              true_next: torch.Tensor, mask: torch.Tensor, *, top_m: int = 20,
              margin: float = 1.0, push_true_in_topk: bool = True,
              space: str = "logits", below: str = "teacher") -> torch.Tensor:
    """Hinge that pushes knowledge-revealing logits below the teacher's top-K boundary.

    student: (B, T, V); teacher_indices: (B, T, K); tau: (B, T) the teacher's K-th logit;
    true_next: (B, T) the forget answer's next token at each position; mask: (B, T).
    ``space`` is what the hinge compares, for the student's scores and ``tau`` alike (the
    caller converts ``tau``: :func:`teacher_threshold`):

    * ``logits``: raw logits (METHOD.md's formula). A raw logit has a free offset per position
      (softmax ignores a constant added to all of them), so a student can meet this hinge by
      lowering every logit of a position while the fact stays its argmax;
    * ``logprobs``: log-probabilities, which no offset changes; but the gradient of
      log p_j vanishes as p_j -> 1, so facts the model is sure of move slowly;
    * ``logodds``: log-odds, log p_j - log(1 - p_j) = z_j - logsumexp_{i != j} z_i: no
      offset either, and a gradient of 1 on z_j however sure the model is.

    ``below`` is what the revealing scores must fall under (by ``margin``): ``teacher``,
    ``tau`` (METHOD.md); ``alternative``, the student's own best score outside H(t) at the
    same position (``tau`` is ignored; may be None), held fixed (no gradient): the hinge then
    lowers the revealing token until it has lost its rank, without raising one particular
    wrong answer (which would carry over to every context, e.g. one employer for everyone).
    The value is a difference of two student scores, which no offset changes, and for
    ``logits`` and ``logprobs`` alike it is the same logit difference.
    """
    z = to_space(student.float(), space)
    vocab = z.shape[-1]
    in_topk = torch.zeros_like(z, dtype=torch.bool).scatter_(-1, teacher_indices, True)
    revealing = torch.zeros_like(in_topk)
    if top_m > 0:
        student_top = z.topk(min(top_m, vocab), dim=-1).indices
        revealing.scatter_(-1, student_top, True)
        revealing &= ~in_topk
    true_hot = F.one_hot(true_next.clamp(min=0), vocab).bool()
    if not push_true_in_topk:
        true_hot &= ~in_topk
    revealing |= true_hot
    if below == "alternative":
        threshold = z.detach().masked_fill(revealing, float("-inf")).max(-1).values
        # a position where every token reveals has no alternative: nothing to push below
        threshold = threshold.masked_fill(threshold.isneginf(), float("inf"))
    else:
        threshold = tau.float()
    hinge = F.relu(z - threshold.unsqueeze(-1) + margin) * revealing
    return masked_mean(hinge.sum(-1), mask)


def to_space(z: torch.Tensor, space: str) -> torch.Tensor:
    """Raw logits (..., V) -> the push's scores in ``space`` (see :func:`push_loss`).

    Log-odds without cancellation: for each position's top-1 token, z_j minus the
    logsumexp of the other logits (its probability may round to 1, where log(1 - p) would
    be -inf); for every other token p <= 1/2, and log p - log1p(-p) is exact."""
    if space == "logits":
        return z
    logp = F.log_softmax(z, dim=-1)
    if space == "logprobs":
        return logp
    top = z.argmax(-1, keepdim=True)
    others = torch.logsumexp(z.scatter(-1, top, float("-inf")), dim=-1, keepdim=True)
    rest = logp.clamp(max=-math.log(2.0))  # the top-1 entries are replaced below
    odds = logp - torch.log1p(-rest.exp())
    return odds.scatter(-1, top, z.gather(-1, top) - others)


def teacher_threshold(tau: torch.Tensor, lse: torch.Tensor | None, space: str) -> torch.Tensor:
    """The teacher's K-th logit ``tau`` in ``space``, given its log-normaliser ``lse``."""
    if space == "logits":
        return tau
    logp = tau - lse
    if space == "logprobs":
        return logp
    tiny = torch.finfo(logp.dtype).tiny  # a K-th token (K >= 2) has p <= 1/2; K = 1 may not
    return logp - torch.log(-torch.expm1(logp.clamp(max=-tiny)))


def topk_logits(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Teacher summary at each position: top-K values, indices, and the K-th value (tau)."""
    values, indices = logits.float().topk(k, dim=-1)
    return values, indices, values[..., -1]


# --------------------------------------------------------------------------------------------
# The training step: batches of examples with cached teacher summaries -> the total loss.
# --------------------------------------------------------------------------------------------



PUSH_SPACES = ("logits", "logodds", "logprobs")
PUSH_BELOW = ("teacher", "alternative")
REVEALS = ("targets", "contrast")


@dataclass
class PushPullConfig:
    """Weights and switches of L = L_pull + beta L_push + gamma L_adv (each can be ablated)."""

    pull: bool = True
    # False: forget items are not pulled towards the teacher's desired response, only pushed
    # and adversarially prefilled; retain/neighbour items are pulled as before (an ablation)
    pull_forget: bool = True
    # weight of the forget rows in the pull (1: as every other row; 0 is pull_forget: False,
    # with the positions still counted); between the two, the forget answers are still drawn
    # toward the teacher's, less strongly
    forget_pull: float = 1.0
    push: bool = True
    prefill: bool = True
    beta: float = 1.0
    gamma: float = 1.0
    delta: float = 1.0
    margin: float = 1.0
    top_m: int = 20
    first_only: bool = False
    push_true_in_topk: bool = True
    adv_pull: bool = False
    # each kind of item (forget, retain, neighbour, general, and boundary keep items as a kind
    # of their own) weighs the same in the pull, whatever its quota: adding rows of one kind
    # does not dilute another's pull
    pull_per_kind: bool = False
    # weight of the NLL of the keep items' pulled responses (retain, neighbour, general; the
    # gold answers by default), added to the pull (0: off). The pull's optimum is the starting
    # model itself, which AdamW's steps overshoot; the NLL's lies beyond it (docs/RESULTS.md,
    # "Why the pull does not keep TOFU's retain authors")
    keep_nll: float = 0.0
    prefill_candidates: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    prefill_refresh: int = 5
    # what the push's hinge compares: raw logits (METHOD.md's formula, the default),
    # log-probabilities or log-odds; see push_loss and docs/DESIGN.md
    push_space: str = "logits"
    # what the revealing scores must fall below: the teacher's K-th score (METHOD.md, the
    # default) or the student's best token outside H ("alternative"; see push_loss)
    push_below: str = "teacher"
    # which tokens of a forget answer are pushed: those overlapping its targets ("targets"),
    # or of those, the ones the model predicts for the forget subject more surely than for
    # ``reveal_contrasts`` other people by log-ratio > ``reveal_threshold`` ("contrast";
    # unlearnkit.training.reveal)
    reveal: str = "targets"
    reveal_contrasts: int = 16
    reveal_threshold: float = math.log(2.0)
    # for data without a subject field (TOFU): the forget subjects' names; a forget record
    # whose question contains one is contrasted with other people as that subject's
    reveal_subjects: list[str] = field(default_factory=list)
    # with "contrast": a revealing bare initial letter (' J' of ' J' 'as' 'w' 'yn') hands its
    # contrast to the rest of its word and is not pushed itself; pushing it reaches every
    # answer that starts with the letter (unlearnkit.training.reveal.spare_initials)
    spare_initials: bool = False
    # weight of an RMU-like term on the forget answers (0: off, the method as METHOD.md has
    # it; an ablation against relearning): at the pushed positions of the true answers, the
    # residual stream after block ``steer_layer`` is steered toward
    # steer_beta * ||h_0(t)|| * u (Adaptive RMU's target: h_0 the starting model's, u a fixed
    # random unit vector drawn from ``steer_seed``; unlearnkit.objectives.steer). The push
    # and the pull act on logits only; this term changes the representations they read
    steer: float = 0.0
    steer_layer: int = 7
    steer_beta: float = 5.0
    steer_seed: int = 0
    # weight of RMU's retain term on the keep items (0: off, an ablation): at every response
    # position of their pulled inputs, mean_H (h(t) - h_0(t))^2, the residual stream after
    # block ``steer_layer`` against the starting model's (cached before training:
    # training.unlearn.attach_start_hidden). The pull keeps the keep items' logits; this keeps
    # the representation every later block reads, as RMU keeps its retain activations
    keep_hidden: float = 0.0

    def __post_init__(self) -> None:
        if self.steer < 0 or self.steer_layer < 0 or self.steer_beta <= 0:
            raise UnlearnError("unlearn.method.steer must be >= 0 (0: off), steer_layer >= 0 "
                               f"(a decoder block) and steer_beta > 0, got {self.steer}, "
                               f"{self.steer_layer} and {self.steer_beta}")
        if self.keep_hidden < 0:
            raise UnlearnError("unlearn.method.keep_hidden must be >= 0 (0: off), got "
                               f"{self.keep_hidden}")
        if self.keep_nll < 0 or (self.keep_nll and not self.pull):
            raise UnlearnError("unlearn.method.keep_nll must be >= 0 and needs the pull (it adds "
                               f"to the keep items' pull), got {self.keep_nll} with pull "
                               f"{self.pull}")
        if not 0 <= self.forget_pull <= 1:
            raise UnlearnError("unlearn.method.forget_pull must be in [0, 1] (the forget rows' "
                               f"weight in the pull), got {self.forget_pull}")
        if self.reveal not in REVEALS:
            raise UnlearnError(f"unlearn.method.reveal must be one of {REVEALS}, "
                               f"got {self.reveal!r}")
        if self.reveal_contrasts < 1:
            raise UnlearnError("unlearn.method.reveal_contrasts must be >= 1, got "
                               f"{self.reveal_contrasts}")
        if self.push_space not in PUSH_SPACES:
            raise UnlearnError(f"unlearn.method.push_space must be one of {PUSH_SPACES}, "
                               f"got {self.push_space!r}")
        if self.push_below not in PUSH_BELOW:
            raise UnlearnError(f"unlearn.method.push_below must be one of {PUSH_BELOW}, "
                               f"got {self.push_below!r}")
        for name in ("beta", "gamma", "margin"):  # weights, and how far below the push pushes
            if getattr(self, name) < 0:
                raise UnlearnError(f"unlearn.method.{name} must be >= 0, got "
                                   f"{getattr(self, name)}")
        if self.delta <= 0:
            raise UnlearnError(f"unlearn.method.delta (the pull's Huber threshold) must be > 0, "
                               f"got {self.delta}")
        if self.top_m < 0:
            raise UnlearnError(f"unlearn.method.top_m must be >= 0 (0: push the true token "
                               f"alone), got {self.top_m}")
        if not self.prefill_candidates or any(k < 1 for k in self.prefill_candidates):
            raise UnlearnError("unlearn.method.prefill_candidates must be a non-empty list of "
                               "prefill lengths >= 1 token (e.g. [1, 2, 4, 8]), got "
                               f"{self.prefill_candidates}")
        if self.prefill_refresh < 1:
            raise UnlearnError(f"unlearn.method.prefill_refresh must be >= 1 (steps between "
                               f"refreshes of the prefill lengths), got {self.prefill_refresh}")


@dataclass
class Example:
    """One training item: the pull input (chat(x) + y_T) and, for forget items, the true answer.

    ``reveal`` marks the true-answer positions whose next token is knowledge-revealing (the
    tokens of a target fact); ``None`` means every position. ``boundary``: a keep item whose
    answer contains a forget target (``training.unlearn.boundary_ids``). ``record_id``: the
    record the item was built from ("" for items that are not one record's, e.g. raw passages).
    """

    kind: str
    pull_input: Rendered
    pull_top: TopK
    true_input: Rendered | None = None
    true_top: TopK | None = None
    reveal: list[bool] | None = None
    prefill_k: int = 0
    boundary: bool = False
    record_id: str = ""
    # with unlearn.method.steer: the starting model's activation norm after block
    # ``steer_layer`` at each response position of ``true_input`` (training.unlearn.
    # attach_start_norms)
    start_norms: torch.Tensor | None = None
    # with unlearn.method.keep_hidden, on keep items: the starting model's residual stream
    # after block ``steer_layer`` at each response position of ``pull_input``, (L, H)
    # (training.unlearn.attach_start_hidden)
    start_hidden: torch.Tensor | None = None


def _window(model, items: list[Rendered], pad_id: int):
    """Student logits over the trailing window that covers every response, and its offset."""
    win = forward_responses(model, items, pad_id)
    return win.logits, win.labels, win.offset


def _aligned(items: list[Rendered], tops: list[TopK], offset: int, shape: tuple[int, int],
             start_at: list[int] | None = None):
    """Teacher top-K placed at the student's response positions inside the logits window."""
    rows, cols = shape
    k = tops[0].values.shape[-1]
    values = torch.zeros(rows, cols, k)
    indices = torch.zeros(rows, cols, k, dtype=torch.long)
    mask = torch.zeros(rows, cols, dtype=torch.bool)
    nxt = torch.zeros(rows, cols, dtype=torch.long)
    for r, (it, top) in enumerate(zip(items, tops, strict=True)):
        first = it.response_start - 1 - offset
        n = top.values.shape[0]
        values[r, first:first + n] = top.values
        indices[r, first:first + n] = top.indices
        skip = start_at[r] if start_at else 0
        mask[r, first + skip:first + n] = True
        nxt[r, first:first + n] = torch.tensor(it.input_ids[it.response_start:])
    return values, indices, mask, nxt


def pushpull_step(pad_id: int, cfg: PushPullConfig):
    """Step function for :func:`unlearnkit.training.loop.train` over lists of :class:`Example`.

    One forward pass: the pull inputs and the forget items' true answers are rows of the same
    batch (their shared prompt prefix runs once), and each term reads its rows of the logits.
    The optional steer term runs the true answers once more, up to block ``cfg.steer_layer``.
    """

    def step(model, examples: list[Example]):
        logs: dict[str, float] = {}
        total = torch.zeros((), device=next(model.parameters()).device)
        kept = [e for e in examples if cfg.pull_forget or e.true_input is None] \
            if cfg.pull else []
        pulled = [e.pull_input for e in kept]
        forget = [e for e in examples if e.true_input is not None] \
            if cfg.push or cfg.prefill or cfg.steer else []
        held = [e for e in examples if e.true_input is None] if cfg.keep_hidden else []
        if not pulled and not forget and not held:
            return with_forget_term(total, total), logs
        rows = pulled + [e.true_input for e in forget]
        logits, labels, off = _window(model, rows, pad_id) if rows else (None, None, 0)
        if pulled:
            part = logits[:len(pulled)]
            values, indices, mask, _ = _aligned(pulled, [e.pull_top for e in kept], off,
                                                part.shape[:2])
            groups = None
            if cfg.pull_per_kind:
                names = ["boundary" if e.boundary else e.kind for e in kept]
                ids = {k: i for i, k in enumerate(dict.fromkeys(names))}
                groups = torch.tensor([ids[k] for k in names], device=part.device)
            weights = None if cfg.forget_pull == 1.0 else torch.tensor(
                [cfg.forget_pull if e.true_input is not None else 1.0 for e in kept])
            loss = pull_loss(part, values.to(part.device), indices.to(part.device),
                             mask.to(part.device), delta=cfg.delta, first_only=cfg.first_only,
                             groups=groups, row_weights=weights)
            total, logs["pull"] = total + loss, float(loss.detach())
            keep = [r for r, e in enumerate(kept) if e.true_input is None] if cfg.keep_nll else []
            if keep:
                loss = nll_loss(part[keep], labels[keep])
                total, logs["keep_nll"] = total + cfg.keep_nll * loss, float(loss.detach())
        # the push and prefill terms are the forget term (optim.sam_scope: forget); the
        # forget rows' pull, toward the teacher, stays with the keep terms
        forget_loss = _forget_terms(logits[len(pulled):], off, forget, cfg, logs) if forget \
            else torch.zeros((), device=total.device)
        steered = forget if cfg.steer else []
        if steered or held:
            steer, keep = hidden_terms(model, steered, held, pad_id, cfg)
            if steered:
                forget_loss, logs["steer"] = forget_loss + cfg.steer * steer, float(steer.detach())
            if held:
                total, logs["keep_hidden"] = total + cfg.keep_hidden * keep, float(keep.detach())
        return with_forget_term(total + forget_loss, forget_loss), logs

    return step


def _forget_terms(logits: torch.Tensor, off: int, forget: list[Example], cfg: PushPullConfig,
                  logs: dict):
    """Push and adversarial-prefill terms on the forget rows' logits (true answers)."""
    items = [e.true_input for e in forget]
    dev = logits.device
    tops = [e.true_top for e in forget]
    values, indices, mask, nxt = (t.to(dev) for t in _aligned(items, tops, off, logits.shape[:2]))
    reveal = _reveal_mask(forget, off, logits.shape[:2]).to(dev) & mask
    lse = None if cfg.push_space == "logits" or cfg.push_below == "alternative" else \
        _aligned_lse(forget, off, logits.shape[:2], cfg.push_space).to(dev)
    tau = None if cfg.push_below == "alternative" else \
        teacher_threshold(values[..., -1], lse, cfg.push_space)
    kw = {"top_m": cfg.top_m, "margin": cfg.margin, "push_true_in_topk": cfg.push_true_in_topk,
          "space": cfg.push_space, "below": cfg.push_below}
    total = torch.zeros((), device=dev)
    if cfg.push:
        loss = push_loss(logits, indices, tau, nxt, reveal, **kw)
        total, logs["push"] = total + cfg.beta * loss, float(loss.detach())
    if cfg.prefill:
        starts = [e.prefill_k for e in forget]
        _, _, after, _ = _aligned(items, tops, off, logits.shape[:2], start_at=starts)
        after = after.to(dev) & reveal
        loss = push_loss(logits, indices, tau, nxt, after, **kw)
        if cfg.adv_pull:
            loss = loss + pull_loss(logits, values, indices, after, delta=cfg.delta)
        total, logs["adv"] = total + cfg.gamma * loss, float(loss.detach())
    return total


def hidden_terms(model, steered: list[Example], held: list[Example], pad_id: int,
                 cfg: PushPullConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The two terms read at the residual stream h after block ``cfg.steer_layer``, from one
    forward pass (it stops at that block) over the forget items' true answers and the keep
    items' pulled inputs:

    * steer: mean over the forget answers' pushed positions of
      mean_H (h(t) - steer_beta ||h_0(t)|| u)^2 (Adaptive RMU's forget term);
    * keep: mean over the keep items' response positions of mean_H (h(t) - h_0(t))^2 (RMU's
      retain term), h_0 the starting model's.

    A term with no rows is 0."""
    items = [e.true_input for e in steered] + [e.pull_input for e in held]
    hidden = layer_output(model, items, pad_id, cfg.steer_layer)
    shape = tuple(hidden.shape[:2])
    dev = hidden.device
    steer = keep = torch.zeros((), device=dev)
    if steered:
        norms, answer = _placed(items[:len(steered)], [e.start_norms for e in steered],
                                "start_norms", "attach_start_norms", shape[1])
        mask = (answer & _reveal_mask(steered, 0, (len(steered), shape[1]))).to(dev)
        u = control_vector(hidden.shape[-1], cfg.steer_seed).to(dev)
        steer = activation_mse(hidden[:len(steered)],
                               adaptive_control(norms.to(dev), u, cfg.steer_beta), mask)
    if held:
        start, mask = _placed(items[len(steered):], [e.start_hidden for e in held],
                              "start_hidden", "attach_start_hidden", shape[1])
        keep = activation_mse(hidden[len(steered):], start.to(dev), mask.to(dev))
    return steer, keep


def _placed(items: list[Rendered], readings: list[torch.Tensor | None], name: str,
            attach: str, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each item's starting-model reading ((L,) or (L, H), over its response positions) placed
    at those columns of a (B, width, ...) zero tensor, and the (B, width) mask of them."""
    if any(r is None for r in readings):
        raise UnlearnError(f"this push-pull term needs the starting model's {name} on its "
                           f"items: call training.unlearn.{attach} before training")
    return place(items, readings, 0, width)


def _aligned_lse(forget: list[Example], offset: int, shape: tuple[int, int],
                 space: str) -> torch.Tensor:
    """The teacher's log-normalisers at the true answers' positions (zeros elsewhere)."""
    lse = torch.zeros(shape)
    for r, e in enumerate(forget):
        if e.true_top.lse is None:
            raise UnlearnError(f"push_space {space!r} needs the teacher's log-normalisers, and "
                               "this teacher summary has none: recompute the teacher cache")
        first = e.true_input.response_start - 1 - offset
        lse[r, first:first + len(e.true_top.lse)] = e.true_top.lse
    return lse


def _reveal_mask(forget: list[Example], offset: int, shape: tuple[int, int]) -> torch.Tensor:
    mask = torch.ones(shape, dtype=torch.bool)
    for r, e in enumerate(forget):
        if e.reveal is None:
            continue
        first = e.true_input.response_start - 1 - offset
        mask[r, first:first + len(e.reveal)] = torch.tensor(e.reveal)
    return mask
