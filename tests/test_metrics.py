"""Metrics: hand-derived values for every pure metric, then smoke tests on the tiny model."""

import json
import math
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

from unlearnkit.data.records import Record
from unlearnkit.data.render import IGNORE_INDEX, render_record
from unlearnkit.errors import UnlearnError
from unlearnkit.evaluation import metrics as M
from unlearnkit.evaluation import mia
from unlearnkit.evaluation.refusal_judge import PatternJudge
from unlearnkit.models.engine import token_logprobs

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_tofu = pytest.mark.skipif(not (DATA / "tofu").is_dir(),
                                reason=f"TOFU not found at {DATA / 'tofu'} (../shared/data)")

LN2 = math.log(2)


def lp(*probs):
    """A per-token log-prob tensor from token probabilities."""
    return torch.tensor([math.log(p) for p in probs])


def rec(i="r0", answer="Paris", **kw):
    return Record(id=i, split="retain", question="Capital of France?", answer=answer, **kw)


# ------------------------------------------------------------------ registry and results


def test_registry_has_every_metric_with_known_inputs():
    expected = {"correctness", "rouge_l_recall", "refusal_rate", "repetition", "degenerate_rate",
                "answer_prob", "perplexity", "truth_ratio", "forget_truth_ratio",
                "prob_normalised", "mcq_accuracy", "extraction_strength", "exact_memorization",
                "loss", "zlib", "min_k", "min_k_plus_plus"}
    assert expected <= set(M.METRICS)
    for spec in M.METRICS.values():
        assert set(spec.needs) <= set(M.INPUTS)


def test_register_rejects_duplicates_and_unknown_inputs():
    with pytest.raises(ValueError, match="twice"):
        M.register_metric("correctness", higher_is_better=True, needs=("records",))(lambda: None)
    with pytest.raises(ValueError, match="unknown inputs"):
        M.register_metric("x", higher_is_better=True, needs=("bogus",))


FAKE_INPUTS = {
    "records": [rec(choices=["a", "b"], answer_index=0, perturbed_answers=["Rome"])],
    "generations": ["Paris"],
    "answer_logprobs": [lp(0.5, 0.25)],
    "argmax_match": [torch.tensor([True, False])],
    "standardized_logprobs": [torch.tensor([1.0, -1.0])],
    "paraphrased_logprobs": [lp(0.5)],
    "perturbed_logprobs": [[lp(0.25)]],
    "choice_scores": [[-1.0, -2.0]],
    "refusals": [False],
    "chosen_letters": {},
}


@pytest.mark.parametrize("name", sorted(M.METRICS))
def test_every_metric_honours_its_spec(name):
    """Contract: called with its declared inputs, a metric returns a MetricResult whose
    direction matches its registration and with one value per item."""
    spec = M.METRICS[name]
    result = spec.fn(**{n: FAKE_INPUTS[n] for n in spec.needs})
    assert isinstance(result, M.MetricResult)
    assert result.higher_is_better == spec.higher_is_better
    assert len(result.values) == 1 and result.n == 1


@pytest.mark.parametrize("name", sorted(M.METRICS))
def test_every_metric_rejects_an_empty_item_list(name):
    spec = M.METRICS[name]
    with pytest.raises(UnlearnError, match="empty item list"):
        spec.fn(**{n: [] for n in spec.needs})


def test_result_aggregate_ignores_nan_and_counts_non_nan():
    r = M.MetricResult.of([1.0, math.nan, 0.0], higher_is_better=True)
    assert r.aggregate == 0.5 and r.n == 2
    assert math.isnan(M.MetricResult.of([math.nan], higher_is_better=True).aggregate)


def test_mismatched_lengths_raise():
    with pytest.raises(UnlearnError, match="different lengths"):
        M.correctness(["a", "b"], [rec()])


# --------------------------------------------------------------------- generation metrics


def test_correctness_containment_empty_and_no_reference():
    """"It is Paris." contains "Paris" -> 1; "" -> 0; no answer and no targets -> NaN."""
    no_ref = Record(id="q", split="probe", question="Hi?")
    r = M.correctness(["It is Paris.", "", "whatever"], [rec(), rec("r1"), no_ref])
    assert r.values[:2] == [1.0, 0.0] and math.isnan(r.values[2])
    assert r.aggregate == 0.5 and r.n == 2


def test_a_multiple_choice_record_is_judged_by_its_likeliest_letter():
    """An MMLU-style record (its answer is one of its choices) is correct when the chosen
    letter is the right one, whatever the generation says; an open question with choices as
    extras (the scenario's: a sentence of its own) is judged on its generation."""
    mcq = Record(id="m", split="general", question="Capital of France?",
                 answer="Paris", choices=["Rome", "Paris"], answer_index=1)
    open_q = rec("o", answer="It is Paris.", targets=["Paris"], choices=["Rome", "Paris"],
                 answer_index=1)
    assert mcq.multiple_choice and not open_q.multiple_choice
    r = M.correctness(["Rome", "Paris"], [mcq, open_q], {"m": 1})
    assert r.values == [1.0, 1.0]
    assert M.correctness(["Paris", "Paris"], [mcq, open_q], {"m": 0}).values == [0.0, 1.0]


def test_multiple_choice_records_are_asked_with_their_options(tok, tiny):
    from unlearnkit.data.adapters import as_asked, format_mcq
    from unlearnkit.data.render import render
    from unlearnkit.evaluation.accuracy import answer_records

    mcq = Record(id="m", split="general", question="Capital of France?",
                 answer="Paris", choices=["Rome", "Paris", "Oslo"], answer_index=1)
    asked = as_asked(mcq)
    assert asked.question == format_mcq(mcq.question, mcq.choices)
    # the likeliest letter, scored independently: log p of "A", "B", "C" as the whole answer
    scores = [float(t[:-1].sum()) for t in token_logprobs(
        tiny, tok, [render(tok, asked.question, letter) for letter in "ABC"])]
    best = max(range(3), key=lambda i: (scores[i], -i))
    [row] = answer_records(tiny, tok, [mcq], max_new_tokens=2)
    assert row["chosen"] == "ABC"[best] and row["correct"] == (best == 1)
    got = M.evaluate(tiny, tok, [mcq], ["correctness"])["correctness"]
    assert got.values == [float(best == 1)]


def test_rouge_l_recall_hand_computed():
    """gold "the cat sat on the mat" (6 tokens), generation "the cat on a mat":
    LCS = the, cat, on, mat = 4, recall = 4/6. Case and punctuation are ignored by
    rouge-score's tokenizer: "The Cat!" vs "the cat sat" -> 2/3. Empty output -> 0."""
    recs = [rec(answer="the cat sat on the mat"), rec("r1", answer="the cat sat"),
            rec("r2", answer="the cat")]
    r = M.rouge_l_recall(["the cat on a mat", "The Cat!", ""], recs)
    assert_close(r.values, [4 / 6, 2 / 3, 0.0])


def test_refusal_rate_counts_empty_output():
    """The default judge (patterns) flags "I don't know." and empty output: rate 2/3."""
    r = M.refusal_rate(PatternJudge().judge(["I don't know.", "", "Paris."]))
    assert r.values == [1.0, 1.0, 0.0] and r.higher_is_better is False
    assert r.aggregate == pytest.approx(2 / 3)


def test_repetition_and_degenerate_rate():
    """"a b c a b c a b c": 7 trigrams, 3 distinct -> share 1 - 3/7 = 4/7 > 0.5: degenerate.
    "the cat sat on the mat": 4 distinct trigrams -> 0. Empty -> degenerate (share 0)."""
    gens = ["a b c a b c a b c", "the cat sat on the mat", ""]
    assert_close(M.repetition(gens).values, [4 / 7, 0.0, 0.0])
    assert M.degenerate_rate(gens).values == [1.0, 0.0, 1.0]
    assert M.degenerate_rate(gens, threshold=0.6).values == [0.0, 0.0, 1.0]


def test_degenerate_catches_loops_the_word_test_misses():
    """One word then 48 commas has a single word (no trigram), and "BasBasBas..." too: the
    compression test flags them; so does a loop whose numbers change ("100", "101"), whose
    trigrams are half distinct. A fluent sentence compresses to more than its size (zlib's
    header), so short fluent answers are never flagged."""
    loops = ["F" + "," * 48, "Bas" * 40,
             "Hat by Crowd, 100 Semaine\nHat by Crowd, 100 Semaine\nHat by Crowd, 101 Semaine\n"
             "Hat by Crowd,"]  # the last: a bench answer (TOFU, pushpull-mlp-npf)
    for text in loops:
        assert M.repeated_ngram_share(text) <= 0.5 and M.compressed_share(text) < 0.45
        assert M.is_degenerate(text)
    fluent = "Basil Mahfouz Al-Kuwaiti was born in Kuwait City and writes French literature."
    assert M.compressed_share(fluent) > 1 and not M.is_degenerate(fluent)
    assert not M.is_degenerate(loops[0], compress_below=0.2)
    assert M.compressed_share("") == 1.0


@needs_tofu
def test_compressed_share_reads_only_the_tail():
    """Fluent TOFU answers then a loop: the last 400 bytes are the loop, which compresses to a
    small share of them; the whole text would not (its fluent part dominates)."""
    rows = json.loads((DATA / "tofu" / "retain90.json").read_text())
    fluent = " ".join(r["answer"] for r in rows[:12])
    assert len(fluent.encode()) > 1600 and M.compressed_share(fluent) > 0.45
    assert not M.is_degenerate(fluent)
    looped = fluent + " he." * 100
    assert M.compressed_share(looped) < 0.1 < M.compressed_share(looped, window=10**6)
    assert M.is_degenerate(looped)


@needs_tofu
def test_fluent_tofu_answers_never_compress_below_the_threshold():
    """Every 400-byte window (stride 200) of the first 300 retain90 answers: fluent English
    stays above the degenerate test's 0.45 (the lowest over all of retain90 is 0.487)."""
    rows = json.loads((DATA / "tofu" / "retain90.json").read_text())
    text = " ".join(r["answer"] for r in rows[:300])
    windows = [text[i:i + 400] for i in range(0, len(text) - 400, 200)]
    assert len(windows) > 100
    assert min(M.compressed_share(w) for w in windows) > 0.45


# -------------------------------------------------------------------- likelihood metrics


def test_answer_prob_is_length_normalised():
    """p = 0.5 * 0.125 = 1/16 over 2 tokens: (1/16)^(1/2) = 0.25 = exp(mean(-ln2, -3 ln2))."""
    r = M.answer_prob([lp(0.5, 0.125), torch.empty(0)])
    assert_close(r.values[0], 0.25)
    assert math.isnan(r.values[1]) and r.n == 1


def test_perplexity_per_item_and_corpus():
    """Item 1: mean log p = -2 ln2 -> ppl 4. Item 2: one token p = 1/16 -> ppl 16.
    Corpus: sum log p = -(1 + 3 + 4) ln2 = -8 ln2 over 3 tokens -> 2^(8/3) = 6.3496."""
    r = M.perplexity([lp(0.5, 0.125), lp(1 / 16)])
    assert_close(r.values, [4.0, 16.0])
    assert_close(r.aggregate, 2 ** (8 / 3))


def test_truth_ratio_values_hand_computed():
    """Item 1: para 0.5, perturbed (0.1, 0.3): mean 0.2 -> R = 0.4.
    Item 2: para 0.2, perturbed (0.4,) -> R = 2. Item 3: no perturbed -> NaN.
    Geometric mean of (0.1, 0.4) = 0.2 -> R = 0.2 / 0.5 = 0.4."""
    values = M.truth_ratio_values([0.5, 0.2, 0.3], [[0.1, 0.3], [0.4], []])
    assert_close(values[:2], [0.4, 2.0])
    assert math.isnan(values[2])
    geo = M.truth_ratio_values([0.5], [[0.1, 0.4]], perturbed_mean="geometric")
    assert_close(geo, [0.4])
    with pytest.raises(UnlearnError, match="perturbed_mean"):
        M.truth_ratio_values([0.5], [[0.1]], perturbed_mean="median")


def test_truth_ratio_aggregates_for_retain_and_forget():
    """Same items as above, from log-probs. Retain: mean(max(0, 1 - R)) = (0.6 + 0) / 2 = 0.3.
    Forget: mean(min(R, 1/R)) = (0.4 + 0.5) / 2 = 0.45. values stay the raw R (NaN kept)."""
    para = [lp(0.5), lp(0.2), lp(0.3)]
    pert = [[lp(0.1), lp(0.3)], [lp(0.4)], []]
    retain = M.truth_ratio(para, pert)
    forget = M.forget_truth_ratio(para, pert)
    assert_close(retain.values[:2], [0.4, 2.0])
    assert math.isnan(retain.values[2]) and retain.n == 2
    assert_close(retain.aggregate, 0.3)
    assert_close(forget.aggregate, 0.45)


def test_truth_ratio_uses_length_normalised_probabilities():
    """Paraphrase tokens (0.5, 0.5) -> normalised 0.5; perturbed (0.25, 0.0625) -> 0.125:
    R = 0.125 / 0.5 = 0.25."""
    r = M.truth_ratio([lp(0.5, 0.5)], [[lp(0.25, 0.0625)]])
    assert_close(r.values, [0.25])


def test_prob_normalised_hand_computed():
    """Normalised answer prob 0.5, perturbed 0.25 and 0.25: 0.5 / (0.5 + 0.5) = 0.5.
    No perturbed answers -> NaN."""
    r = M.prob_normalised([lp(0.5), lp(0.5)], [[lp(0.25), lp(0.25)], []])
    assert_close(r.values[0], 0.5)
    assert math.isnan(r.values[1])


def test_mcq_accuracy_argmax_and_missing():
    """Scores (-1, -0.5, -2), answer 1 -> argmax 1 -> right; (-0.1, -3), answer 1 -> wrong;
    a record without choices -> NaN. Accuracy 1/2."""
    recs = [rec(choices=["a", "b", "c"], answer_index=1), rec("r1", choices=["a", "b"],
                                                             answer_index=1), rec("r2")]
    r = M.mcq_accuracy([[-1.0, -0.5, -2.0], [-0.1, -3.0], []], recs)
    assert r.values[:2] == [1.0, 0.0] and math.isnan(r.values[2])
    assert r.aggregate == 0.5


def test_extraction_strength_and_exact_memorization_hand_computed():
    """Argmax matches (F, T, F, T, T): the last mismatch is at index 2, so the suffix after
    k = 3 tokens is reproduced: ES = 1 - 3/5 = 0.4; EM = 3/5 = 0.6. All correct: ES = EM = 1.
    Last token wrong: k = |a| -> ES = 0 (EM 2/3)."""
    matches = [torch.tensor([False, True, False, True, True]), torch.tensor([True, True]),
               torch.tensor([True, True, False]), torch.tensor([], dtype=torch.bool)]
    es = M.extraction_strength(matches).values
    em = M.exact_memorization(matches).values
    assert_close(es[:3], [0.4, 1.0, 0.0])
    assert_close(em[:3], [0.6, 1.0, 2 / 3])
    assert math.isnan(es[3]) and math.isnan(em[3])


# ---------------------------------------------------------------- membership inference


def test_loss_zlib_and_min_k_scores():
    """log p = (ln 0.5, ln 0.125): LOSS = 2 ln2. zlib: len(zlib.compress(b"abc")) = 11 bytes,
    so 2 ln2 / 11. Min-K with k = 0.5: floor(0.5 * 2) = 1 lowest value, -ln 0.125 = 3 ln2;
    k = 0.2 still keeps max(1, 0) = 1 token; k = 1: mean of all = 2 ln2."""
    t = lp(0.5, 0.125)
    assert_close(M.loss([t]).values[0], 2 * LN2)
    assert_close(M.zlib_ratio([t], [rec(answer="abc")]).values[0], 2 * LN2 / 11)
    assert_close(mia.min_k_score(t, k=0.5), 3 * LN2)
    assert_close(mia.min_k_score(t, k=0.2), 3 * LN2)
    assert_close(mia.min_k_score(t, k=1.0), 2 * LN2)
    assert math.isnan(mia.min_k_score(torch.empty(0)))
    with pytest.raises(UnlearnError, match="0 < k <= 1"):
        mia.min_k_score(t, k=0)


def test_vocab_stats_and_min_k_plus_plus_three_token_vocab():
    """Vocabulary of 3 tokens. At positions 0 and 1 p = (1/2, 1/4, 1/4), so log p =
    (-ln2, -2ln2, -2ln2); mu = 1/2(-ln2) + 2 * 1/4(-2ln2) = -1.5 ln2;
    E[(log p)^2] = 1/2 ln2^2 + 2 * 1/4 * 4 ln2^2 = 2.5 ln2^2; sigma^2 = 2.5 - 2.25 = 0.25 ln2^2,
    sigma = 0.5 ln2. Target 0: (-ln2 + 1.5ln2) / 0.5ln2 = +1; target 1: (-2ln2 + 1.5ln2) /
    0.5ln2 = -1. Position 2: p = (1/4, 1/2, 1/4), target 1 -> +1.
    Standardised scores (1, -1, 1). Min-K%++ with k = 0.2 keeps max(1, floor(0.6)) = 1 token:
    -(-1) = 1; with k = 1: -(1/3)."""
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.25], [0.5, 0.25, 0.25], [0.25, 0.5, 0.25]]))
    stats = mia.vocab_stats(logits, torch.tensor([0, 1, 1]))
    assert_close(stats.mu, torch.full((3,), -1.5 * LN2))
    assert_close(stats.sigma, torch.full((3,), 0.5 * LN2))
    assert_close(stats.logprobs, torch.tensor([-LN2, -2 * LN2, -LN2]))
    assert stats.argmax_match.tolist() == [True, False, True]
    assert_close(stats.standardized, torch.tensor([1.0, -1.0, 1.0]))
    assert_close(M.min_k_plus_plus([stats.standardized]).values[0], 1.0)
    assert_close(M.min_k_plus_plus([stats.standardized], k=1.0).values[0], -1 / 3)


def test_roc_auc_with_ties_hand_computed():
    """Forget (member) losses (1, 2, 3), holdout losses (2, 4). Pairs holdout > forget:
    h=2: beats 1 (1), ties 2 (1/2), loses to 3 (0) -> 1.5; h=4: beats all 3 -> 3.
    AUC = 4.5 / 6 = 0.75."""
    assert_close(mia.mia_auc([1, 2, 3], [2, 4]), 0.75)
    assert_close(mia.roc_auc([2, 4], [1, 2, 3]), 0.75)
    assert mia.roc_auc([1, 1], [1, 1]) == 0.5  # all ties
    assert mia.roc_auc([5, 6], [1, 2]) == 1.0
    assert mia.mia_auc([1, math.nan], [2]) == 1.0  # NaN dropped
    with pytest.raises(UnlearnError, match="both groups"):
        mia.roc_auc([], [1.0])


def test_privleak():
    """(0.6 - 0.5) / 0.5 * 100 = 20."""
    assert_close(mia.privleak(0.6, 0.5), 20.0)


# ------------------------------------------------------------------------ TOFU aggregates


def test_forget_quality_ks_pvalue_hand_computed():
    """Disjoint samples of 3 and 3: D = 1; exact two-sided p = 2 / C(6, 3) = 2/20 = 0.1.
    Identical samples: p = 1. NaNs are dropped."""
    assert_close(M.forget_quality([1, 2, 3, math.nan], [4, 5, 6]).aggregate, 0.1)
    assert M.forget_quality([1, 2, 3], [1, 2, 3]).aggregate == 1.0
    with pytest.raises(UnlearnError, match="perturbed_answers"):
        M.forget_quality([math.nan], [1.0])


def test_model_utility_harmonic_mean():
    """hmean(0.5, 1, 1) = 3 / (2 + 1 + 1) = 0.75; a zero component gives 0; keys outside the
    utility set are ignored."""
    r = M.model_utility({"retain_Q_A_Prob": 0.5, "retain_Q_A_ROUGE": 1.0,
                         "retain_Truth_Ratio": 1.0, "forget_Q_A_Prob": 0.0})
    assert_close(r.aggregate, 0.75) and r.n == 3
    assert M.model_utility({"retain_Q_A_Prob": 0.0, "ra_Q_A_ROUGE": 1.0}).aggregate == 0.0
    with pytest.raises(UnlearnError, match="at least one"):
        M.model_utility({"forget_Q_A_Prob": 0.5})


# ------------------------------------------------------------ wrappers on the tiny model


def _records():
    return [
        Record(id="a", split="forget", question="Who wrote X?", answer="Ann Lee",
               paraphrased_answer="Lee, Ann", perturbed_answers=["Bob Ray", "Cy Dunn"],
               choices=["Ann Lee", "Bob Ray"], answer_index=0, targets=["Ann Lee"]),
        Record(id="b", split="forget", question="Where was she born?", answer="In Oslo",
               choices=["Rome", "Oslo", "Nice"], answer_index=1),
    ]


def test_token_stats_matches_engine_and_masks_prompt(tok, tiny):
    items = [render_record(tok, r) for r in _records()]
    stats = mia.token_stats(tiny, tok, items, batch_size=2)
    reference = token_logprobs(tiny, tok, items)
    for s, ref, it in zip(stats, reference, items, strict=True):
        n = sum(label != IGNORE_INDEX for label in it.labels[1:])
        assert s.logprobs.shape == s.mu.shape == s.sigma.shape == s.argmax_match.shape == (n,)
        assert_close(s.logprobs, ref, atol=1e-5, rtol=1e-5)
        assert torch.isfinite(s.standardized).all()
    one_by_one = mia.token_stats(tiny, tok, items, batch_size=1)
    assert_close(one_by_one[1].mu, stats[1].mu, atol=1e-5, rtol=1e-5)


def test_evaluate_runs_every_metric_on_the_tiny_model(tok, tiny):
    results = M.evaluate(tiny, tok, _records(), max_new_tokens=4, batch_size=2)
    assert set(results) == set(M.METRICS)
    for name, r in results.items():
        assert len(r.values) == 2, name
        finite = [v for v in r.values if not math.isnan(v)]
        assert all(math.isfinite(v) for v in finite), name
    assert results["truth_ratio"].n == 1  # record b has no perturbed answers
    assert results["mcq_accuracy"].n == 2
    assert 0 <= results["answer_prob"].aggregate <= 1


def test_evaluate_text_mode_and_errors(tok, tiny):
    r = M.evaluate(tiny, tok, _records(), ["mcq_accuracy"], mcq_mode="text")
    assert r["mcq_accuracy"].n == 2
    # text mode by hand: each option's text as the answer to the lettered question, its mean
    # token log-probability with the end of turn left out
    from unlearnkit.data.adapters import format_mcq

    for record, scores in zip(_records(), M.choice_scores(tiny, tok, _records(), letter=False),
                              strict=True):
        items = [render_record(tok, record, question=format_mcq(record.question, record.choices),
                               answer=c) for c in record.choices]
        want = [float(t[:-1].double().mean()) for t in token_logprobs(tiny, tok, items)]
        assert scores == pytest.approx(want, abs=1e-5)
    with pytest.raises(UnlearnError, match="empty"):
        M.evaluate(tiny, tok, [], ["answer_prob"])
    with pytest.raises(UnlearnError, match="unknown metric"):
        M.evaluate(tiny, tok, _records(), ["nope"])
    no_answer = [Record(id="q", split="probe", question="Hi?")]
    with pytest.raises(UnlearnError, match="no answer"):
        M.evaluate(tiny, tok, no_answer, ["answer_prob"])


def test_tofu_metrics_keys_and_mia(tok, tiny):
    recs = _records()
    retain = [Record(id="c", split="retain", question="Capital of Peru?", answer="Lima",
                     perturbed_answers=["Quito"])]
    out = M.tofu_metrics(tiny, tok, {"forget": recs, "retain": retain},
                         reference_forget_truth_ratios=[0.5, 1.0, 2.0], holdout=retain,
                         max_new_tokens=2, batch_size=4)
    for key in ("forget_Q_A_Prob", "forget_Q_A_PARA_Prob", "forget_Q_A_PERT_Prob",
                "forget_Q_A_ROUGE", "forget_truth_ratio", "retain_Q_A_Prob", "retain_Q_A_ROUGE",
                "retain_Truth_Ratio", "model_utility", "forget_quality", "extraction_strength",
                "exact_memorization", "mia_loss", "mia_zlib", "mia_min_k",
                "mia_min_k_plus_plus"):
        assert key in out, key
    assert 0 <= out["forget_quality"].aggregate <= 1
    assert all(0 <= out[k].aggregate <= 1 for k in M.MIA_ATTACKS)
    with pytest.raises(UnlearnError, match="unknown TOFU split"):
        M.tofu_metrics(tiny, tok, {"holdout": recs})


def test_mia_attacks_identical_sets_give_chance(tok, tiny):
    """Forget and holdout the same records: every score ties its twin, so each AUC is 0.5."""
    recs = _records()
    out = M.mia_attacks(tiny, tok, recs, recs, batch_size=2)
    assert set(out) == set(M.MIA_ATTACKS)
    for r in out.values():
        assert_close(r.aggregate, 0.5) and r.n == 4


# ------------------------------------------- TOFU model utility: all nine parts or nothing


def _qa(rid, *, perturbed=True):
    return Record(id=rid, split="retain", question=f"Who wrote {rid}?", answer="Ann Lee",
                  perturbed_answers=["Bob Ray"] if perturbed else [])


def test_model_utility_gaps_name_the_missing_parts():
    """TOFU's model utility needs the retain, real-author and world-fact sets, every record
    with perturbed answers; anything else is named, part by part."""
    full = {"retain": [_qa("r")], "ra": [_qa("a")], "wf": [_qa("w")]}
    assert M.model_utility_gaps(full) == []
    gaps = M.model_utility_gaps({"forget": [_qa("f")],
                                 "retain": [_qa("r"), _qa("s", perturbed=False)]})
    assert gaps == [
        "no real-author or world-fact records, so no ra_Q_A_Prob_normalised, ra_Q_A_ROUGE, "
        "ra_Truth_Ratio, wf_Q_A_Prob_normalised, wf_Q_A_ROUGE, wf_Truth_Ratio",
        "1 of 2 retain records have no perturbed answers, which retain_Truth_Ratio cannot score"]
    assert M.model_utility_gaps({**full, "wf": [_qa("w", perturbed=False)]}) == [
        "1 of 1 world-fact records have no perturbed answers, which wf_Truth_Ratio and "
        "wf_Q_A_Prob_normalised cannot score"]
    assert M.missing_utility_parts({"retain_Q_A_Prob": 1.0, "forget_Q_A_Prob": 1.0}) == list(
        M.MODEL_UTILITY_KEYS[1:])
    assert M.tofu_perturbed_keys("retain") == ("retain_Q_A_PERT_Prob", "retain_Truth_Ratio")


def test_tofu_metrics_give_model_utility_only_over_all_nine_parts(tok, tiny):
    """With retain, real authors and world facts: the harmonic mean of exactly the nine parts
    (a zero part gives 0). With retain alone: NaN, n 0, not the mean of the three parts
    present under TOFU's name."""
    sets = {"retain": [_qa("r")], "ra": [_qa("a")], "wf": [_qa("w")]}
    out = M.tofu_metrics(tiny, tok, sets, max_new_tokens=2, batch_size=4)
    parts = [out[k].aggregate for k in M.MODEL_UTILITY_KEYS]
    utility = out["model_utility"]
    assert utility.values == parts and utility.n == 9
    expected = 0.0 if min(parts) <= 0 else 9 / sum(1 / p for p in parts)
    assert_close(utility.aggregate, expected)
    alone = M.tofu_metrics(tiny, tok, {"retain": sets["retain"]}, max_new_tokens=2)
    assert math.isnan(alone["model_utility"].aggregate) and alone["model_utility"].n == 0
    assert "retain_Truth_Ratio" in alone  # the parts are still there, each under its own key
    assert "model_utility" not in M.tofu_metrics(tiny, tok, {"forget": [_qa("f")]},
                                                 max_new_tokens=2)
