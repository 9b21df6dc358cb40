"""Train until forgotten: the ``unlearn.stop`` rule as an ``on_step`` hook of the training loop.

Every ``stop.every`` steps the model answers the forget questions (greedy, judged like the
evaluation judges them: :func:`~unlearnkit.evaluation.accuracy.answer_records`); the fraction
answered correctly goes into that step's log entry as ``forget_check``, and training stops once
it is at most ``stop.forget_accuracy``. Push-pull and the trainable baselines get the same rule
(:mod:`unlearnkit.pipeline.methods`), so a comparison under it stays equal-budget: ``mix.steps``
is every method's most steps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

from unlearnkit.data.records import Record
from unlearnkit.evaluation.accuracy import answer_records
from unlearnkit.models.engine import eval_mode
from unlearnkit.training.unlearn import StopConfig

if TYPE_CHECKING:
    from unlearnkit.pipeline.run import RunConfig

Hook = Callable[[int, dict], "bool | None"]


def forget_check(model, tokenizer, forget: Sequence[Record], cfg: StopConfig, *,
                 max_new_tokens: int, rouge_threshold: float) -> Hook | None:
    """The hook, or None when the rule is off (``every`` 0) or there is nothing to forget."""
    if not cfg.every or not forget:
        return None

    def on_step(step: int, logs: dict) -> bool:
        if step % cfg.every:
            return False
        with eval_mode(model):
            rows = answer_records(model, tokenizer, forget, max_new_tokens=max_new_tokens,
                                  rouge_threshold=rouge_threshold)
        accuracy = sum(r["correct"] for r in rows) / len(rows)
        logs["forget_check"] = accuracy
        done = accuracy <= cfg.forget_accuracy
        tqdm.write(f"step {step}: forget accuracy {accuracy:.1%}"
                   + (f" <= {cfg.forget_accuracy:.1%}: stopping" if done else ""))
        return done

    on_step.generates = True  # FSDP cannot take it: see training.loop.train
    return on_step


def stop_hook(cfg: RunConfig, model, tokenizer, records: Sequence[Record]) -> Hook | None:
    """``unlearn.stop``'s check on a run's forget records (None when it is off)."""
    return forget_check(model, tokenizer, [r for r in records if r.split == "forget"],
                        cfg.unlearn.stop, max_new_tokens=cfg.max_new_tokens,
                        rouge_threshold=cfg.correct_rouge_threshold)


def chain(*hooks: Hook | None) -> Hook | None:
    """One hook running every given hook in order (each sees the same log entry); it stops
    training when any of them says so."""
    live = [h for h in hooks if h is not None]
    if not live:
        return None

    def on_step(step: int, logs: dict) -> bool:
        return any([bool(h(step, logs)) for h in live])  # a list: every hook runs

    on_step.generates = any(getattr(h, "generates", False) for h in live)
    return on_step
