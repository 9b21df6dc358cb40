"""Unlearning with the push-pull method: teacher cache -> examples -> accelerate loop.

The teacher runs once, before training, on the model being unlearned (so neither a frozen
copy nor disabled adapters are needed during training: its outputs are cached on disk).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch

from unlearnkit.data.records import Record
from unlearnkit.data.render import Rendered, render
from unlearnkit.errors import UnlearnError
from unlearnkit.fsutil import built_once
from unlearnkit.models.adapter import adapter_base, is_adapter_folder
from unlearnkit.models.engine import eval_mode, generate, token_logprobs
from unlearnkit.models.loader import (
    OWN_TOKENIZER,
    TokenizerSpec,
    cache_root,
    load_tokenizer,
    resolve_model_path,
)
from unlearnkit.models.lora import LoraSettings, TrainOnly, apply_lora, restrict
from unlearnkit.models.teacher import TeacherConfig, desired_response, instruction
from unlearnkit.models.teacher_cache import cache_key, load_topk, save_topk, teacher_topk
from unlearnkit.objectives.baselines.common import item_key
from unlearnkit.objectives.baselines.reference import response_hidden
from unlearnkit.objectives.pushpull import Example, PushPullConfig


@dataclass
class MixConfig:
    """Batch composition: items per micro-batch from each split, and the number of steps."""

    forget: int = 4
    retain: int = 4
    neighbor: int = 4
    steps: int = 30
    # general keep items (the scenario's replay prompts, never the evaluation probes), pulled
    # like retain items: the keep scope's "everything else"; 0 = none
    general: int = 0
    # also draw them from the replay prompts whose base-model answers ran past the replay's
    # 64-token limit, cut after their last whole sentence (the questions about real people
    # among them): :func:`unlearnkit.pipeline.scenario_models.long_replay_records`
    general_long: bool = False
    # boundary keep items: retain/neighbour records whose answer contains a forget target
    # (a value the push pushes down, e.g. a shared employer), drawn on top of their split's
    # quota (:func:`boundary_ids`); 0 = none
    boundary: int = 0

    def __post_init__(self) -> None:
        quotas = {k: getattr(self, k) for k in ("forget", "retain", "neighbor", "general",
                                                   "boundary")}
        if bad := {k: v for k, v in quotas.items() if v < 0}:
            raise UnlearnError(f"unlearn.mix quotas must be >= 0 items per batch, got {bad}")
        if not any(quotas.values()):
            raise UnlearnError("unlearn.mix quotas are all 0: every micro-batch would be empty; "
                               "give each batch at least one item (unlearn.mix.forget >= 1)")
        if self.forget < 1:
            # push-pull and every trainable baseline unlearn from the forget items of their
            # batches; the methods that train nothing (oracle, prompt_only) never draw a batch,
            # so no method needs forget: 0
            raise UnlearnError("unlearn.mix.forget must be >= 1 forget items per micro-batch, "
                               f"got {self.forget}: without them training unlearns nothing "
                               "(it only fits the keep items)")
        if self.steps < 1:
            raise UnlearnError(f"unlearn.mix.steps must be at least 1, got {self.steps}")


def boundary_ids(records: Sequence[Record]) -> set[str]:
    """Ids of the retain and neighbour records whose answer contains a target of a forget
    record: the keep facts the push endangers, since it lowers the target's tokens."""
    targets = {t for r in records if r.split == "forget" for t in r.targets if t}
    return {r.id for r in records if r.split in ("retain", "neighbor")
            and any(t in (r.answer or "") for t in targets)}


HOLDOUT_SPLITS = ("retain", "neighbor")


def held_out_ids(records: Sequence[Record], fraction: float, seed: int) -> set[str]:
    """Ids of the records left out of unlearning's training: per keep split, ``fraction`` of
    its subjects (rounded, at least one when ``fraction`` > 0, never all), every record of a
    chosen subject; records without a subject count as subjects of their own. Seeded by
    ``seed`` and the split, independent of the records' order."""
    if fraction <= 0:
        return set()
    held: set[str] = set()
    for split in HOLDOUT_SPLITS:
        rows = [r for r in records if r.split == split]
        groups = sorted({r.subject or f"id:{r.id}" for r in rows})
        if len(groups) < 2:
            continue
        count = min(len(groups) - 1, max(1, round(fraction * len(groups))))
        chosen = set(random.Random(f"{seed}:{split}").sample(groups, count))
        held |= {r.id for r in rows if (r.subject or f"id:{r.id}") in chosen}
    return held


def target_token_mask(tokenizer, answer: str, targets: Sequence[str]) -> list[bool] | None:
    """For each response token (end-of-turn included): does it overlap a target's characters
    (every occurrence of every target)?"""
    spans = [(m.start(), m.end()) for t in targets if t for m in re.finditer(re.escape(t), answer)]
    if not spans:
        return None
    ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    flags, prev = [], 0
    for j in range(len(ids)):
        end = len(tokenizer.decode(ids[:j + 1]))
        flags.append(any(s < end and prev < e for s, e in spans))
        prev = end
    return [*flags, False]


def _responses(model, tokenizer, records: list[Record], mode: str, context: str | None,
               cfg: TeacherConfig, desired: bool) -> list[str]:
    if mode == "template" and desired:
        return [desired_response(cfg, r) for r in records]
    if mode == "gold":
        return [r.answer or "" for r in records]
    prompts = [render(tokenizer, r.question, system=r.system, context=context) for r in records]
    return generate(model, tokenizer, prompts, max_new_tokens=cfg.max_new_tokens)


def _pair(tokenizer, rec: Record, answer: str,
          context: str | None) -> tuple[Rendered, Rendered]:
    student = render(tokenizer, rec.question, answer, system=rec.system)
    teacher = render(tokenizer, rec.question, answer, system=rec.system, context=context)
    return student, teacher


def build_examples(model, tokenizer, records: list[Record], cfg: TeacherConfig,
                   model_id: str) -> list[Example]:
    """Teacher responses and top-K logits for every forget/retain/neighbour record (cached)."""
    forget = [r for r in records if r.split == "forget"]
    keep = [r for r in records if r.split in ("retain", "neighbor") or r.meta.get("replay")]
    if not forget:
        raise UnlearnError("no forget records: the data needs a 'forget' split")
    context = instruction(cfg, forget, keep)
    # format 2: the summaries carry the teacher's log-normalisers (push_space logprobs/logodds)
    key = cache_key({"format": 2, "model": model_id, "teacher": asdict(cfg), "context": context,
                     "records": [r.to_dict() for r in forget + keep]})
    path = cache_root() / "teacher" / key

    def compute():
        computed = _compute_teacher(model, tokenizer, forget, keep, cfg, context)
        save_topk(path, *computed)
        return computed

    # another process may be computing the same cache
    tops, meta = built_once(path, lambda: load_topk(path), compute)
    return _examples(tokenizer, forget, keep, tops, meta["responses"], context)


def _compute_teacher(model, tokenizer, forget, keep, cfg, context):
    y_f = _responses(model, tokenizer, forget, cfg.forget_response, context, cfg, True)
    keep_context = None if cfg.keep_context == "plain" else context
    y_k = _responses(model, tokenizer, keep, cfg.keep_response, keep_context, cfg, False)
    recs, answers = forget + keep, y_f + y_k
    pairs = [_pair(tokenizer, r, a, _teacher_context(cfg, r, context))
             for r, a in zip(recs, answers, strict=True)]
    pad = tokenizer.pad_token_id
    promote = [cfg.forget_response == "template"] * len(forget) + [False] * len(keep)
    pull = teacher_topk(model, [t for _, t in pairs], [s for s, _ in pairs], k=cfg.top_k,
                        guidance=cfg.guidance, pad_id=pad, promote=promote,
                        boost=cfg.template_boost, desc="teacher: responses")
    true_pairs = [_pair(tokenizer, r, r.answer or "", context) for r in forget]
    true = teacher_topk(model, [t for _, t in true_pairs], [s for s, _ in true_pairs],
                        k=cfg.top_k, guidance=cfg.guidance, pad_id=pad,
                        desc="teacher: true answers")
    tops = {f"pull-{r.id}": t for r, t in zip(recs, pull, strict=True)}
    tops |= {f"true-{r.id}": t for r, t in zip(forget, true, strict=True)}
    meta = {"responses": dict(zip([r.id for r in recs], answers, strict=True)),
            "context": context}
    return tops, meta


def _teacher_context(cfg: TeacherConfig, rec: Record, context: str) -> str | None:
    """The teacher's context for ``rec``: the instruction, or none for keep items when
    ``cfg.keep_context == "plain"`` (their pull target is then the unchanged model's)."""
    if rec.split != "forget" and cfg.keep_context == "plain":
        return None
    return context


def _examples(tokenizer, forget, keep, tops, responses, context) -> list[Example]:
    out = []
    boundary = boundary_ids(forget + keep)
    for rec in forget + keep:
        student, _ = _pair(tokenizer, rec, responses[rec.id], context)
        ex = Example(kind=rec.split, pull_input=student, pull_top=tops[f"pull-{rec.id}"],
                     boundary=rec.id in boundary, record_id=rec.id)
        if rec.split == "forget":
            ex.true_input, _ = _pair(tokenizer, rec, rec.answer or "", context)
            ex.true_top = tops[f"true-{rec.id}"]
            ex.reveal = target_token_mask(tokenizer, rec.answer or "", rec.targets)
        out.append(ex)
    return out


@torch.no_grad()
def refresh_prefill(model, tokenizer, examples: list[Example], candidates: Sequence[int]):
    """Adversarial prefill: per forget item, the prefix length under which the student most
    likely completes the true answer (mean log-prob of the remaining tokens), from
    ``candidates`` plus half the answer. A prefill is at least one token (the method's
    P = {1, 2, 4, 8, |y|/2}); answers too short for any candidate get k = 0. Note that push
    after a prefill of true tokens is teacher-forced on the same sequence, so it equals push on
    the positions >= k (docs/RESULTS.md)."""
    forget = [e for e in examples if e.true_input is not None]
    with eval_mode(model):
        logps = token_logprobs(model, tokenizer, [e.true_input for e in forget])
    for ex, lp in zip(forget, logps, strict=True):
        n = len(lp)
        options = sorted({k for k in [*candidates, n // 2] if 0 < k < n - 1}) or [0]
        ex.prefill_k = max(options, key=lambda k: float(lp[k:].mean()))


def attach_start_norms(model, pad_id: int, examples: list[Example], layer: int) -> None:
    """For push-pull's steer term: each forget example's ``start_norms``, the norm of
    ``model``'s residual stream after block ``layer`` at the response positions of its true
    answer. Call it on the starting model, before training (a resumed run then reads the same
    norms, not its checkpoint's)."""
    forget = [e for e in examples if e.true_input is not None]
    hidden = response_hidden(model, [e.true_input for e in forget], pad_id, layer=layer)
    for ex in forget:
        ex.start_norms = hidden[item_key(ex.true_input)].norm(dim=-1)


def attach_start_hidden(model, pad_id: int, examples: list[Example], layer: int) -> None:
    """For push-pull's keep_hidden term: each keep example's ``start_hidden``, ``model``'s
    residual stream after block ``layer`` at the response positions of its pulled input, (L,
    H) in fp32. Call it on the starting model, before training, as
    :func:`attach_start_norms`."""
    held = [e for e in examples if e.true_input is None]
    hidden = response_hidden(model, [e.pull_input for e in held], pad_id, layer=layer)
    for ex in held:
        ex.start_hidden = hidden[item_key(ex.pull_input)]


def mixture_plan(examples: list[Example], mix: MixConfig, seed: int) -> list[list[Example]]:
    """``mix.steps`` micro-batches, each drawing its quota from every split (cycling), and
    ``mix.boundary`` items from the examples marked ``boundary`` (:func:`boundary_ids`)."""
    rng = random.Random(seed)
    quotas = {"forget": mix.forget, "retain": mix.retain, "neighbor": mix.neighbor,
              "general": mix.general, "boundary": mix.boundary}
    pools = {k: [e for e in examples if e.kind == k] for k in quotas}
    # items without the flag (any drawable with a ``kind``) are never boundary items
    pools["boundary"] = [e for e in examples if getattr(e, "boundary", False)]
    queues: dict[str, list[Example]] = {k: [] for k in pools}
    plan = []
    for _ in range(mix.steps):
        batch = []
        for kind, quota in quotas.items():
            for _ in range(quota if pools[kind] else 0):
                if not queues[kind]:
                    queues[kind] = rng.sample(pools[kind], len(pools[kind]))
                batch.append(queues[kind].pop())
        plan.append(batch)
    return plan


def check_start_model(name: str, lora: LoraSettings, only: TrainOnly, *,
                      trust_remote_code: bool = False,
                      tokenizer_spec: TokenizerSpec = OWN_TOKENIZER) -> None:
    """Fail now, not after the teacher has run and the run's folder has its first files, on a
    starting model that cannot load (its tokenizer loads as :func:`load_model` loads it
    first) or whose structure refuses ``lora`` (target modules it lacks) or ``only`` (blocks
    or modules it has not): the model is built from its config on the meta device (no
    weights read, no memory taken) and given them as training will. A model that cannot be
    built that way is left to the real load to check."""
    from transformers import AutoConfig, AutoModelForCausalLM

    load_tokenizer(name, trust_remote_code=trust_remote_code, tokenizer_spec=tokenizer_spec)
    if not lora.enabled and not only.enabled:
        return
    path = resolve_model_path(name)
    if is_adapter_folder(path):  # loads as its base model with the adapter merged in
        path = resolve_model_path(adapter_base(path))
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
        restrict(apply_lora(model, lora), only)
    except UnlearnError:
        raise
    except Exception:  # not buildable on the meta device: the real load says what is wrong
        return


FORGET_FORMATS = ("unified", "raw")


@dataclass
class StopConfig:
    """Train until the forget questions are forgotten (push-pull and the trainable baselines
    alike): every ``every`` steps (0 = off), greedy answers to the forget questions are judged
    as the evaluation judges them, and training stops once at most ``forget_accuracy`` of
    them are correct. ``mix.steps`` is then the most steps a run takes. The rule reads only
    the forget set, which the owner of the unlearning request holds anyway; the prefill and
    paraphrase attacks and every keep split stay independent checks."""

    every: int = 0
    forget_accuracy: float = 0.05

    def __post_init__(self) -> None:
        if self.every < 0:
            raise UnlearnError(f"unlearn.stop.every must be >= 0 (0 = off), got {self.every}")
        if not 0.0 <= self.forget_accuracy <= 1.0:
            raise UnlearnError("unlearn.stop.forget_accuracy is a fraction in [0, 1], got "
                               f"{self.forget_accuracy}")


@dataclass
class UnlearnConfig:
    """``forget_format``: the forget set as chat QA (``unified``, the method) or as its raw
    source passages (``raw``, the ablation; :mod:`unlearnkit.training.raw`)."""

    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    method: PushPullConfig = field(default_factory=PushPullConfig)
    mix: MixConfig = field(default_factory=MixConfig)
    stop: StopConfig = field(default_factory=StopConfig)
    seed: int = 0
    forget_format: str = "unified"
    # the share of each keep split's subjects (retain and neighbour people; records without a
    # subject, as TOFU's, one by one) left out of unlearning's training data and evaluated
    # apart: what the method keeps without having been shown it (:func:`held_out_ids`)
    holdout: float = 0.0
    # forget_format raw for the baselines: a passage longer than this many tokens trains as
    # windows of it, one item each (MUSE trains on 2048-token windows of its corpus)
    raw_window: int = 2048

    def __post_init__(self) -> None:
        if self.raw_window < 2:
            raise UnlearnError(f"unlearn.raw_window is a window's length in tokens, at least "
                               f"2, got {self.raw_window}")
        if not 0.0 <= self.holdout < 1.0:
            raise UnlearnError(f"unlearn.holdout is the share of keep subjects held out of "
                               f"training, in [0, 1), got {self.holdout}")
        if self.forget_format not in FORGET_FORMATS:
            raise UnlearnError(f"unlearn.forget_format must be one of {FORGET_FORMATS}, "
                               f"got {self.forget_format!r}")


def prefill_hook(model, tokenizer, examples, cfg: PushPullConfig):
    def on_step(step: int, logs: dict) -> None:
        if cfg.prefill and step % max(1, cfg.prefill_refresh) == 0:
            refresh_prefill(model, tokenizer, examples, cfg.prefill_candidates)

    return on_step


def prefill_state(examples: list[Example]):
    """(get, set) of the forget examples' prefill lengths, for checkpoints."""
    forget = [e for e in examples if e.true_input is not None]

    def get() -> dict:
        return {"prefill_k": [e.prefill_k for e in forget]}

    def put(saved: dict) -> None:
        for ex, k in zip(forget, saved.get("prefill_k", []), strict=False):
            ex.prefill_k = k

    return get, put
