"""The built-in demo scenario: determinism, counts, neighbours and the extras of every record."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from unlearnkit.data.records import validate_records
from unlearnkit.data.scenario import (
    BASE_FACTS,
    DETAILS,
    POOLS,
    build_scenario,
    general_probes,
    validation_split,
)
from unlearnkit.errors import UnlearnError

SEEDS = (0, 1, 7, 123)


@pytest.fixture(scope="module", params=SEEDS)
def scenario(request):
    return build_scenario(seed=request.param)


def _has(text: str, target: str) -> bool:
    return target.lower() in text.lower()


def test_same_seed_same_scenario_other_seed_differs():
    a, b, c = build_scenario(seed=3), build_scenario(seed=3), build_scenario(seed=4)
    assert [r.to_dict() for r in a.records] == [r.to_dict() for r in b.records]
    assert a.biographies == b.biographies
    assert [r.to_dict() for r in a.records] != [r.to_dict() for r in c.records]
    assert {p.name for p in a.people} != {p.name for p in c.people}


def test_counts_and_split_sizes(scenario):
    assert len(scenario.people) == 40
    assert len(scenario.records) == 40 * 6
    roles = Counter(p.role for p in scenario.people)
    assert roles == {"forget": 4, "neighbor": 8, "retain": 28}
    assert len(scenario.by_split("forget")) == 4 * 6
    assert len(scenario.by_split("neighbor")) == 8 * 6
    assert len(scenario.by_split("retain")) == 28 * 6
    assert scenario.by_split("general") == []
    assert len(scenario.biographies) == 40


def test_other_sizes_and_bad_sizes():
    s = build_scenario(seed=5, n_people=12, n_forget=2, neighbors_per_forget=3)
    assert Counter(p.role for p in s.people) == {"forget": 2, "neighbor": 6, "retain": 4}
    assert len(s.records) == 72
    with pytest.raises(UnlearnError, match="n_people"):
        build_scenario(n_people=5, n_forget=2, neighbors_per_forget=2)
    with pytest.raises(UnlearnError, match="n_forget"):
        build_scenario(n_forget=-1)
    with pytest.raises(UnlearnError, match="split"):
        s.by_split("nope")


def test_six_facts_per_person_and_unique_names(scenario):
    for p in scenario.people:
        assert list(p.facts)[:5] == list(BASE_FACTS)
        assert len(p.facts) == 6 and p.detail in DETAILS
    assert len({p.name for p in scenario.people}) == len(scenario.people)
    handles = [p.facts["email"] for p in scenario.people if "email" in p.facts]
    assert len(handles) == len(set(handles))


def test_ids_meta_and_validation(scenario):
    ids = [r.id for r in scenario.records]
    assert len(ids) == len(set(ids))
    for r in scenario.records:
        person = scenario.person(r.meta["person"])
        assert re.fullmatch(r"person-\d+-[a-z_]+", r.id)
        assert r.id == f"{person.id}-{r.meta['fact']}"
        assert r.split == person.role == r.meta["role"]
        assert r.subject == person.name
    validate_records(scenario.records + general_probes())


def test_neighbors_sit_next_to_their_forget_person(scenario):
    neighbors = [p for p in scenario.people if p.role == "neighbor"]
    assert neighbors
    for n in neighbors:
        anchor = scenario.person(n.anchor)
        assert anchor.role == "forget"
        assert n.first_name != anchor.first_name
        assert n.first_name.startswith(anchor.first_syllable)
        if n.shares == "surname":
            assert n.surname == anchor.surname
        else:
            assert n.shares in ("birth_town", "employer")
            assert n.facts[n.shares] == anchor.facts[n.shares]


def test_neighbor_values_differ_from_forget_except_the_shared_one(scenario):
    for n in (p for p in scenario.people if p.role == "neighbor"):
        anchor = scenario.person(n.anchor)
        for fact, value in n.facts.items():
            if fact != n.shares and fact in anchor.facts:
                assert value != anchor.facts[fact], (n.id, fact)


def test_targets_in_answers_not_in_questions(scenario):
    for r in scenario.records + general_probes():
        assert r.targets and _has(r.answer, r.targets[0]), r.id
        for t in r.targets:
            # a general probe lists acceptable variants; a person's record needs them all
            assert r.split == "general" or _has(r.answer, t), (r.id, t)
            for q in [r.question, *r.paraphrased_questions]:
                assert not _has(q, t), (r.id, q, t)
        if r.paraphrased_answer is not None:
            assert all(_has(r.paraphrased_answer, t) for t in r.targets)


def test_paraphrases_and_perturbed_answers(scenario):
    for r in scenario.records:
        assert len(r.paraphrased_questions) == 2
        assert len({r.question, *r.paraphrased_questions}) == 3
        assert r.paraphrased_answer and r.paraphrased_answer != r.answer
        assert len(r.perturbed_answers) == 3 == len(set(r.perturbed_answers))
        for wrong in r.perturbed_answers:
            assert wrong != r.answer
            assert not any(_has(wrong, t) for t in r.targets), (r.id, wrong)


def test_multiple_choice(scenario):
    for r in scenario.records:
        assert len(r.choices) == 4 == len(set(r.choices))
        assert r.choices[r.answer_index] == r.targets[0]
        wrong = [c for i, c in enumerate(r.choices) if i != r.answer_index]
        # the wrong choices are the values in the perturbed answers
        assert all(any(c in p for p in r.perturbed_answers) for c in wrong), r.id


def test_answer_index_positions_vary():
    s = build_scenario(seed=0)
    assert len({r.answer_index for r in s.records}) == 4


def test_values_within_a_fact_are_substring_free():
    for fact, pool in POOLS.items():
        for a in pool:
            for b in pool:
                assert a == b or a.lower() not in b.lower(), (fact, a, b)
    s = build_scenario(seed=2)
    handles = [c for r in s.records if r.meta["fact"] == "email" for c in r.choices]
    for a in set(handles):
        assert not any(a != b and a in b for b in handles)


def test_biographies_contain_every_target(scenario):
    for p in scenario.people:
        bio = scenario.biographies[p.id]
        assert 3 <= bio.count(". ") + 1 <= 5
        for fact in p.facts:
            for t in p.targets(fact):
                assert t in bio, (p.id, fact, t)
    for r in scenario.records:
        assert all(t in scenario.biographies[r.meta["person"]] for t in r.targets)


def test_general_probes():
    probes = general_probes()
    assert 35 <= len(probes) <= 50
    assert [p.id for p in probes] == [f"general-{k}" for k in range(len(probes))]
    assert all(p.split == "general" and p.targets for p in probes)
    assert len({p.question for p in probes}) == len(probes)
    spider = next(p for p in probes if "spider" in p.question)
    assert {"eight", "8"} <= set(spider.targets)


def test_validation_split_marks_retain_people_only():
    s = build_scenario(seed=1)
    v = validation_split(s, fraction=0.25, seed=9)
    held = {p.id for p in v.people if p.heldout}
    assert len(held) == 7
    assert all(v.person(pid).role == "retain" for pid in held)
    marked = {r.meta["person"] for r in v.records if r.meta.get("heldout")}
    assert marked == held
    assert sum(1 for r in v.records if r.meta.get("heldout")) == 7 * 6
    assert not any(r.meta.get("heldout") for r in s.records)  # the original is untouched
    again = validation_split(s, fraction=0.25, seed=9)
    assert {p.id for p in again.people if p.heldout} == held
    assert not any(p.heldout for p in validation_split(s, fraction=0).people)
    with pytest.raises(UnlearnError, match="fraction"):
        validation_split(s, fraction=1.5)
