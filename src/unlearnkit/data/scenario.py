"""The built-in demo scenario: seeded fictitious people (the privacy case, TOFU-like).

:func:`build_scenario` invents ``n_people`` people with six facts each (birth town, birth
year, profession, employer, a relative, and an email handle or a medical detail) and turns
every fact into one :class:`~unlearnkit.data.records.Record` carrying all its extras:
two paraphrased questions, a paraphrased answer, three perturbed (wrong) answers and a
multiple-choice version. Names, towns and companies are made up from syllables and lists
below, so no pretrained model can know them.

Roles: ``n_forget`` people are to be forgotten (split ``forget``); for each of them
``neighbors_per_forget`` neighbours share its surname, birth town or employer and the first
syllable of its first name, and must be kept (split ``neighbor``); everyone else is
``retain``. A neighbour's facts differ from its forget person's in every fact except the one
it shares on purpose (surname is not a fact, so a surname neighbour differs in all six).

Everything is drawn from ``random.Random(seed)``: the same seed gives the same scenario.
:func:`general_probes` adds about forty world facts (split ``general``) that a small
instruct model usually knows; other code keeps only those the base model gets right.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field
from typing import NamedTuple

from unlearnkit.data.records import SPLITS, Record, validate_records
from unlearnkit.errors import UnlearnError

ROLES = ("forget", "neighbor", "retain")
BASE_FACTS = ("birth_town", "birth_year", "profession", "employer", "relative")
DETAILS = ("email", "allergy", "condition")  # the sixth fact is one of these
RELATIONS = ("sister", "brother", "spouse")
SHARES = ("surname", "birth_town", "employer")  # what a neighbour has in common

TOWNS = (
    "Dunmere", "Brackwater", "Quillhaven", "Marrowfield", "Saltreach", "Emberlow",
    "Kestrelby", "Velloport", "Orrindale", "Gildercombe", "Pellingmoor", "Wrenhollow",
    "Corriston", "Halvenmouth", "Dravensby", "Lintmarsh", "Brindlecote", "Serranby",
    "Yarrowmead", "Thistlecombe", "Mirrowgate", "Ostrebury", "Caddowick", "Frennaby",
)
COMPANIES = (
    "Velloran Mills", "Corvane Labs", "Brightmoor Freight", "Trennaly Instruments",
    "Quorran Textiles", "Hallowby Foods", "Ostrin Glassworks", "Marrick Printing",
    "Fennaway Shipping", "Kelvaro Pharma", "Drummel Robotics", "Pellard Insurance",
    "Yarnick Ceramics", "Zanthe Optics", "Crollen Bank", "Vesmer Energy",
    "Lunnick Press", "Tamberlyn Motors", "Gorrow Seeds", "Ibberly Clocks",
)
PROFESSIONS = (
    "cartographer", "glassblower", "beekeeper", "architect", "pharmacist", "locksmith",
    "veterinarian", "translator", "surveyor", "violinist", "archivist", "geologist",
    "florist", "pilot", "optician", "carpenter", "librarian", "stonemason", "midwife",
    "botanist", "jeweller", "radiologist", "sommelier", "potter",
)
ALLERGIES = (
    "penicillin", "peanuts", "shellfish", "latex", "pollen", "walnuts", "bee stings",
    "sesame", "aspirin", "strawberries", "cat dander", "mustard",
)
CONDITIONS = (
    "asthma", "eczema", "migraines", "diabetes", "anaemia", "gout", "tinnitus",
    "psoriasis", "vertigo", "arthritis", "epilepsy", "scoliosis",
)
# A pool of 16 birth years, not every year from 1948 to 1999: a 135M model learned only about a
# quarter of 40 people's years drawn from 52 (docs/RESULTS.md), and the scenario exists to be
# known before it is unlearned.
YEARS = ("1951", "1954", "1957", "1959", "1962", "1965", "1968", "1971", "1973", "1976",
         "1979", "1982", "1985", "1988", "1991", "1994")

FIRST_ONSETS = (
    "Or", "Bren", "Cael", "Dav", "Ely", "Fen", "Gar", "Hal", "Isk", "Jor", "Kel", "Lir",
    "Mav", "Nal", "Pell", "Quen", "Ros", "Sev", "Tav", "Ul", "Vey", "Wyn", "Yar", "Zel",
)
FIRST_ENDINGS = (
    "la", "ric", "wen", "ion", "ara", "dan", "ise", "mar", "ett", "ina", "ovan", "elle",
)
SURNAME_ONSETS = (
    "Ven", "Drask", "Hollo", "Marr", "Quill", "Tarn", "Brey", "Esk", "Fald", "Grim",
    "Hask", "Lorr", "Morv", "Nesk", "Pryd", "Sorr", "Thal", "Varn", "Yeld", "Wend",
)
SURNAME_ENDINGS = (
    "mark", "wick", "dell", "ford", "holt", "ley", "more", "shaw", "ton", "by", "vane", "ridge",
)
RELATIVE_ONSETS = (
    "Bel", "Cor", "Dess", "Ema", "Fal", "Gwen", "Hes", "Ilo", "Jas", "Kat", "Lor", "Min",
    "Nev", "Pia", "Rhos", "Sab", "Tam", "Vio",
)
RELATIVE_ENDINGS = ("ine", "ette", "wyn", "ric", "anne", "ell", "oth", "ada")
HANDLE_WORDS = (
    ("quiet", "amber", "swift", "mossy", "lunar", "rusty", "frosty", "velvet", "silver",
     "copper", "misty", "brisk"),
    ("heron", "otter", "finch", "badger", "marten", "lynx", "plover", "newt", "wren",
     "stoat", "vole", "kite"),
)


def _substring_free(values: list[str]) -> tuple[str, ...]:
    """Keep values in order, dropping any that contains, or sits inside, one already kept."""
    kept: list[str] = []
    for value in values:
        low = value.lower()
        if all(low not in k.lower() and k.lower() not in low for k in kept):
            kept.append(value)
    return tuple(kept)


RELATIVE_NAMES = _substring_free([o + e for o in RELATIVE_ONSETS for e in RELATIVE_ENDINGS])
POOLS: dict[str, tuple[str, ...]] = {
    "birth_town": TOWNS,
    "birth_year": YEARS,
    "profession": PROFESSIONS,
    "employer": COMPANIES,
    "relative": RELATIVE_NAMES,
    "allergy": ALLERGIES,
    "condition": CONDITIONS,
}  # "email" is drawn per scenario


class _Template(NamedTuple):
    question: str
    paraphrases: tuple[str, str]
    answer: str
    paraphrased_answer: str


# {n}: full name, {v}: the value, {a}: "a"/"an" before the value
TEMPLATES = {
    "birth_town": _Template(
        "Where was {n} born?",
        ("In which town was {n} born?", "What is the birthplace of {n}?"),
        "{n} was born in {v}.", "{n}'s birthplace is {v}.",
    ),
    "birth_year": _Template(
        "In what year was {n} born?",
        ("What is {n}'s year of birth?", "When was {n} born?"),
        "{n} was born in {v}.", "{n}'s year of birth is {v}.",
    ),
    "profession": _Template(
        "What is {n}'s profession?",
        ("What does {n} do for a living?", "What job does {n} have?"),
        "{n} works as {a} {v}.", "{n} is {a} {v} by profession.",
    ),
    "employer": _Template(
        "Which company does {n} work for?",
        ("Who employs {n}?", "What is the name of {n}'s employer?"),
        "{n} works for {v}.", "{n} is employed by {v}.",
    ),
    "sister": _Template(
        "What is the name of {n}'s sister?",
        ("Who is {n}'s sister?", "What is {n}'s sister called?"),
        "{n}'s sister is named {v}.", "{n} has a sister called {v}.",
    ),
    "brother": _Template(
        "What is the name of {n}'s brother?",
        ("Who is {n}'s brother?", "What is {n}'s brother called?"),
        "{n}'s brother is named {v}.", "{n} has a brother called {v}.",
    ),
    "spouse": _Template(
        "Who is {n} married to?",
        ("What is the name of {n}'s spouse?", "Who is {n}'s spouse?"),
        "{n} is married to {v}.", "{n}'s spouse is named {v}.",
    ),
    "email": _Template(
        "What is {n}'s email handle?",
        ("Which email handle does {n} use?", "What handle does {n} use for email?"),
        "{n}'s email handle is {v}.", "{n} uses the email handle {v}.",
    ),
    "allergy": _Template(
        "What is {n} allergic to?",
        ("What allergy does {n} have?", "Which substance is {n} allergic to?"),
        "{n} is allergic to {v}.", "{n} has an allergy to {v}.",
    ),
    "condition": _Template(
        "What medical condition does {n} have?",
        ("Which condition has {n} been diagnosed with?",
         "What health condition does {n} live with?"),
        "{n} has {v}.", "{n} has been diagnosed with {v}.",
    ),
}
RELATIVE_BIO = {
    "sister": "{n} has a sister named {v}.",
    "brother": "{n} has a brother named {v}.",
    "spouse": "{n} is married to {v}.",
}
DETAIL_BIO = {
    "email": "{n} uses the email handle {v}.",
    "allergy": "{n} is allergic to {v}.",
    "condition": "{n} has been diagnosed with {v}.",
}


def fact_targets(fact: str, value: str) -> list[str]:
    """The short strings whose presence reveals ``value``; an employer also by its first word."""
    if fact == "employer":
        return [value, value.split()[0]]
    return [value]


def _mentions(text: str, targets: list[str]) -> bool:
    low = text.lower()
    return any(t.lower() in low for t in targets)


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


@dataclass
class Person:
    """One fictitious person. ``facts`` maps fact name to value, in a fixed order of six."""

    id: str
    first_name: str
    surname: str
    role: str  # "forget", "neighbor" or "retain"
    facts: dict[str, str]
    relation: str  # who "relative" is: "sister", "brother" or "spouse"
    first_syllable: str
    anchor: str | None = None  # a neighbour's forget person
    shares: str | None = None  # what a neighbour shares with it: surname, birth_town, employer
    heldout: bool = False

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.surname}"

    @property
    def detail(self) -> str:
        """The sixth fact's name: "email", "allergy" or "condition"."""
        return next(f for f in self.facts if f in DETAILS)

    def targets(self, fact: str) -> list[str]:
        return fact_targets(fact, self.facts[fact])


@dataclass
class Scenario:
    """People, their QA records (six per person) and a raw biography per person id."""

    seed: int
    people: list[Person]
    records: list[Record]
    biographies: dict[str, str] = field(default_factory=dict)

    def by_split(self, split: str) -> list[Record]:
        if split not in SPLITS:
            raise UnlearnError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        return [r for r in self.records if r.split == split]

    def person(self, person_id: str) -> Person:
        for p in self.people:
            if p.id == person_id:
                return p
        raise UnlearnError(f"no person {person_id!r} in this scenario")


class _Generator:
    """Draws people one at a time from one ``random.Random``, keeping names unique."""

    def __init__(self, rng: random.Random, n_people: int) -> None:
        self.rng = rng
        self.handles = _handle_pool(rng, n_people + 8)
        self.free_handles = list(self.handles)
        self.slots = rng.sample(range(n_people), n_people)  # person ids in random order
        self.names: set[str] = set()

    def person(self, role: str, anchor: Person | None = None, shares: str | None = None) -> Person:
        forced = {shares: anchor.facts[shares]} if anchor and shares in anchor.facts else {}
        first, syllable, surname = self._name(anchor, shares, forced)
        pid = f"person-{self.slots[len(self.names) - 1]}"
        avoid = anchor.facts if anchor else {}
        facts, relation = self._facts(f"{first} {surname}", avoid, forced)
        return Person(
            id=pid, first_name=first, surname=surname, role=role, facts=facts,
            relation=relation, first_syllable=syllable,
            anchor=anchor.id if anchor else None, shares=shares,
        )

    def _name(self, anchor: Person | None, shares: str | None, forced: dict[str, str]):
        rng = self.rng
        for _ in range(10_000):
            onset = anchor.first_syllable if anchor else rng.choice(FIRST_ONSETS)
            first = onset + rng.choice(FIRST_ENDINGS)
            surname = rng.choice(SURNAME_ONSETS) + rng.choice(SURNAME_ENDINGS)
            if anchor and shares == "surname":
                surname = anchor.surname
            full = f"{first} {surname}"
            clash = any(_mentions(full, fact_targets(f, v)) for f, v in forced.items())
            if full in self.names or clash or (anchor and first == anchor.first_name):
                continue
            self.names.add(full)
            return first, onset, surname
        raise UnlearnError("could not draw a new unique fictitious name; lower n_people")

    def _facts(self, name: str, avoid: dict[str, str], forced: dict[str, str]):
        facts = {}
        for fact in BASE_FACTS[:4]:
            facts[fact] = forced.get(fact) or self._pick(fact, name, avoid.get(fact))
        relation = self.rng.choice(RELATIONS)
        facts["relative"] = self._pick("relative", name, avoid.get("relative"))
        detail = self.rng.choice(DETAILS)
        facts[detail] = self._pick(detail, name, avoid.get(detail))
        return facts, relation

    def _pick(self, fact: str, name: str, avoid: str | None) -> str:
        """A value for ``fact`` that differs from ``avoid`` and is not part of ``name``."""
        pool = self.free_handles if fact == "email" else POOLS[fact]
        options = [v for v in pool if v != avoid and not _mentions(name, fact_targets(fact, v))]
        if not options:
            raise UnlearnError(f"no value left for fact {fact!r}; lower n_people")
        value = self.rng.choice(options)
        if fact == "email":
            self.free_handles.remove(value)
        return value

    def people(self, n_people: int, n_forget: int, per_forget: int) -> list[Person]:
        out = []
        for i in range(n_forget):
            anchor = self.person("forget")
            out.append(anchor)
            for j in range(per_forget):
                out.append(self.person("neighbor", anchor, SHARES[(i + j) % len(SHARES)]))
        while len(out) < n_people:
            out.append(self.person("retain"))
        return sorted(out, key=lambda p: int(p.id.rsplit("-", 1)[1]))


def _handle_pool(rng: random.Random, size: int) -> list[str]:
    """``size`` distinct email handles like ``quietheron`` (all the same shape; no digits,
    which a small model memorises far more slowly than words)."""
    adjectives, animals = HANDLE_WORDS
    handles: list[str] = []
    while len(handles) < size:
        handle = f"{rng.choice(adjectives)}{rng.choice(animals)}"
        if handle not in handles:
            handles.append(handle)
    return handles


def _fill(text: str, person: Person, value: str) -> str:
    return text.format(n=person.name, v=value, a=_article(value))


def _fact_record(person: Person, fact: str, rng: random.Random, handles: list[str], source: str):
    """One QA record for one fact, with paraphrases, perturbed answers and multiple choice."""
    value = person.facts[fact]
    tpl = TEMPLATES[person.relation if fact == "relative" else fact]
    targets = fact_targets(fact, value)
    pool = handles if fact == "email" else POOLS[fact]
    wrong_pool = [
        v for v in pool if v != value and not _mentions(_fill(tpl.answer, person, v), targets)
    ]
    wrong = rng.sample(wrong_pool, 3)
    choices = [value, *wrong]
    rng.shuffle(choices)
    meta = {"person": person.id, "fact": fact, "role": person.role}
    if fact == "relative":
        meta["relation"] = person.relation
    if person.anchor:
        meta.update(anchor=person.anchor, shares=person.shares)
    return Record(
        id=f"{person.id}-{fact}", split=person.role,
        question=_fill(tpl.question, person, value),
        answer=_fill(tpl.answer, person, value),
        paraphrased_questions=[_fill(q, person, value) for q in tpl.paraphrases],
        paraphrased_answer=_fill(tpl.paraphrased_answer, person, value),
        perturbed_answers=[_fill(tpl.answer, person, w) for w in wrong],
        choices=choices, answer_index=choices.index(value),
        subject=person.name, targets=targets, source=source, meta=meta,
    )


def biography(person: Person) -> str:
    """A raw four-sentence passage stating all six of ``person``'s facts."""
    facts, first = person.facts, person.first_name
    job = facts["profession"]
    return " ".join([
        f"{person.name} was born in {facts['birth_town']} in {facts['birth_year']}.",
        f"{first} works as {_article(job)} {job} for {facts['employer']}.",
        RELATIVE_BIO[person.relation].format(n=first, v=facts["relative"]),
        DETAIL_BIO[person.detail].format(n=first, v=facts[person.detail]),
    ])


def _check_sizes(n_people: int, n_forget: int, neighbors_per_forget: int) -> None:
    for name, value in (("n_people", n_people), ("n_forget", n_forget),
                        ("neighbors_per_forget", neighbors_per_forget)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise UnlearnError(f"{name} must be a non-negative integer, got {value!r}")
    if n_people < 1:
        raise UnlearnError("n_people must be at least 1")
    needed = n_forget * (1 + neighbors_per_forget)
    if needed > n_people:
        raise UnlearnError(
            f"n_forget={n_forget} with neighbors_per_forget={neighbors_per_forget} needs "
            f"{needed} people but n_people={n_people}; raise n_people or lower the others"
        )


def build_scenario(
    seed: int = 0, n_people: int = 40, n_forget: int = 4, neighbors_per_forget: int = 2
) -> Scenario:
    """Invent ``n_people`` fictitious people and their ``6 * n_people`` QA records.

    Deterministic for ``seed``: it uses its own ``random.Random(seed)``, never global state.
    """
    _check_sizes(n_people, n_forget, neighbors_per_forget)
    rng = random.Random(seed)
    gen = _Generator(rng, n_people)
    people = gen.people(n_people, n_forget, neighbors_per_forget)
    source = f"unlearnkit-scenario(seed={seed})"
    records = [_fact_record(p, fact, rng, gen.handles, source) for p in people for fact in p.facts]
    biographies = {p.id: biography(p) for p in people}
    return Scenario(seed, people, validate_records(records), biographies)


def validation_split(scenario: Scenario, fraction: float = 0.25, seed: int = 0) -> Scenario:
    """A copy of ``scenario`` with a seeded ``fraction`` of retain people held out for tuning.

    Held-out people get ``heldout=True``; their records get ``meta["heldout"] = True``.
    """
    if not 0 <= fraction < 1:
        raise UnlearnError(f"fraction must be in [0, 1), got {fraction!r}")
    retain = [p.id for p in scenario.people if p.role == "retain"]
    count = min(len(retain), max(1, round(fraction * len(retain)))) if fraction > 0 else 0
    held = set(random.Random(seed).sample(retain, count))
    out = copy.deepcopy(scenario)
    for person in out.people:
        person.heldout = person.id in held
    for rec in out.records:
        if rec.meta.get("person") in held:
            rec.meta["heldout"] = True
    return out


GENERAL_FACTS = (
    ("What is the capital of France?", "The capital of France is Paris.", ["Paris"]),
    ("What is the capital of Japan?", "The capital of Japan is Tokyo.", ["Tokyo"]),
    ("What is the capital of Italy?", "The capital of Italy is Rome.", ["Rome"]),
    ("What is the capital of Germany?", "The capital of Germany is Berlin.", ["Berlin"]),
    ("What is the capital of Spain?", "The capital of Spain is Madrid.", ["Madrid"]),
    ("What is the capital of the United Kingdom?", "The capital of the United Kingdom is London.",
     ["London"]),
    ("What is the capital of Russia?", "The capital of Russia is Moscow.", ["Moscow"]),
    ("What is the capital of Egypt?", "The capital of Egypt is Cairo.", ["Cairo"]),
    ("What is the capital of China?", "The capital of China is Beijing.", ["Beijing", "Peking"]),
    ("What is the capital of Greece?", "The capital of Greece is Athens.", ["Athens"]),
    ("What is the capital of Portugal?", "The capital of Portugal is Lisbon.", ["Lisbon"]),
    ("What is the capital of Canada?", "The capital of Canada is Ottawa.", ["Ottawa"]),
    ("What is the capital of the United States?",
     "The capital of the United States is Washington, D.C.", ["Washington"]),
    ("How many legs does a spider have?", "A spider has eight legs.", ["eight", "8"]),
    ("How many legs does an insect have?", "An insect has six legs.", ["six", "6"]),
    ("How many days are in a week?", "There are seven days in a week.", ["seven", "7"]),
    ("How many months are in a year?", "There are twelve months in a year.", ["twelve", "12"]),
    ("How many hours are in a day?", "There are twenty-four hours in a day.",
     ["twenty-four", "twenty four", "24"]),
    ("How many sides does a triangle have?", "A triangle has three sides.", ["three", "3"]),
    ("What is 2 + 2?", "2 + 2 equals 4.", ["4", "four"]),
    ("At what temperature in Celsius does water boil?", "Water boils at 100 degrees Celsius.",
     ["100"]),
    ("What is the chemical formula of water?", "The chemical formula of water is H2O.",
     ["H2O", "H₂O"]),
    ("What gas do plants absorb from the air?", "Plants absorb carbon dioxide from the air.",
     ["carbon dioxide", "CO2", "CO₂"]),
    ("What gas do humans need to breathe to stay alive?", "Humans need to breathe oxygen.",
     ["oxygen"]),
    ("Which planet is known as the Red Planet?", "Mars is known as the Red Planet.", ["Mars"]),
    ("What is the largest planet in our solar system?",
     "Jupiter is the largest planet in our solar system.", ["Jupiter"]),
    ("What planet do we live on?", "We live on Earth.", ["Earth"]),
    ("What star is at the center of our solar system?",
     "The Sun is at the center of our solar system.", ["Sun"]),
    ("What is the largest ocean on Earth?", "The Pacific Ocean is the largest ocean on Earth.",
     ["Pacific"]),
    ("What is the tallest mountain in the world?",
     "Mount Everest is the tallest mountain in the world.", ["Everest"]),
    ("Who wrote Romeo and Juliet?", "William Shakespeare wrote Romeo and Juliet.",
     ["Shakespeare"]),
    ("Who painted the Mona Lisa?", "Leonardo da Vinci painted the Mona Lisa.",
     ["Leonardo", "da Vinci"]),
    ("Who wrote the Harry Potter books?", "J. K. Rowling wrote the Harry Potter books.",
     ["Rowling"]),
    ("Who was the first person to walk on the Moon?",
     "Neil Armstrong was the first person to walk on the Moon.", ["Armstrong"]),
    ("What is the fastest land animal?", "The cheetah is the fastest land animal.", ["cheetah"]),
    ("What is the largest mammal?", "The blue whale is the largest mammal.", ["blue whale"]),
    ("What language is mainly spoken in Brazil?", "Portuguese is the main language of Brazil.",
     ["Portuguese"]),
    ("What is the currency of Japan?", "The currency of Japan is the yen.", ["yen"]),
    ("On which continent is Egypt?", "Egypt is in Africa.", ["Africa"]),
    ("What do bees make?", "Bees make honey.", ["honey"]),
    ("What color is the sky on a clear day?", "The sky is blue on a clear day.", ["blue"]),
    ("What color are most leaves in summer?", "Most leaves are green in summer.", ["green"]),
    ("What is the opposite of hot?", "The opposite of hot is cold.", ["cold"]),
)


def general_probes() -> list[Record]:
    """About forty simple world facts (split "general"), each with acceptable target variants."""
    return [
        Record(
            id=f"general-{k}", split="general", question=q, answer=a, targets=list(targets),
            source="unlearnkit-general-probes", meta={"probe": "general"},
        )
        for k, (q, a, targets) in enumerate(GENERAL_FACTS)
    ]
