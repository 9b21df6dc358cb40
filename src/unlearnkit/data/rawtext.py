"""Raw text -> chat QA records, by an offline template or by a model (a :class:`QAGenerator`).

Template method (the default; deterministic, no model). Rules:

1. Whitespace is collapsed and the passage split into sentences after ``.``, ``!`` or ``?``
   followed by a space and a capital, digit or quote, but not after an abbreviation such as
   ``Dr.``, ``e.g.`` or a one-letter initial (``J.``).
2. Subject: the one given, else the run of capitalised words opening the passage (an opening
   ``The`` is skipped, particles such as ``de``/``van``/``of`` may join two capitalised words, a
   trailing ``'s`` is dropped). A lone sentence starter (``It``, ``In``, ``This``...) is none.
3. With a subject: "What do you know about <subject>?" answered by the passage's first sentence
   (its summary), with paraphrases "Tell me about <subject>." and "What is known about
   <subject>?".
4. Per sentence of 4+ words: "Complete this statement about <subject>: '<first part> ...'"
   ("Complete this statement: ..." without a subject), answered by the rest of the sentence.
   The cut falls after half the words (rounded down), moved left so a run of capitalised words
   (a name) is never split.
5. ``targets`` (for containment metrics): the answer's runs of capitalised words (not function
   words like ``The``/``She``) and numbers, minus those already in the question; if none, the
   answer's longest word of 4+ letters.

Model generators (:class:`HFModelGenerator`, :class:`OpenAIGenerator`) prompt for a JSON list
of ``{"question", "answer"}``; output that is not such a list is skipped and counted (a
warning), never a crash, and the last reply is kept (``last_reply``) so that a source that
yields nothing can say what the model answered (:func:`no_pairs_reason`).
:func:`passages_to_records` validates every pair, drops duplicate questions (normalised) and
keeps the source passage in ``meta["passage"]``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from unlearnkit.data.records import Record, normalize_question
from unlearnkit.errors import UnlearnError

logger = logging.getLogger(__name__)

_ABBREVIATIONS = {"dr.", "mr.", "mrs.", "ms.", "st.", "jr.", "sr.", "prof.", "e.g.", "i.e.",
                  "etc.", "vs.", "no.", "inc.", "ltd.", "co.", "mt.", "gen.", "col.", "lt."}
_PARTICLES = {"de", "da", "del", "der", "di", "du", "la", "le", "van", "von", "al", "bin", "of"}
_STARTERS = {"a", "an", "the", "it", "its", "this", "that", "these", "those", "he", "she",
             "they", "we", "i", "you", "his", "her", "their", "our", "my", "in", "on", "at",
             "by", "for", "from", "with", "after", "before", "during", "when", "while", "if",
             "although", "however", "there", "here", "and", "but", "or", "as", "to", "of",
             "yes", "no", "today", "yesterday", "many", "some", "most", "all", "each"}
_EDGE = ".,;:!?\"'()[]{}“”‘’«»"
_NEXT = r"(?=[A-Z0-9\"'(“‘])"
_SENTENCE_END = re.compile(rf"(?:(?<=[.!?])|(?<=[.!?][\"')\]”’]))\s+{_NEXT}")


@runtime_checkable
class QAGenerator(Protocol):
    """Anything that turns a passage into ``[{"question": ..., "answer": ...}, ...]``.

    Optional keys per pair: ``subject``, ``targets``, ``paraphrased_questions``, ``kind``.
    """

    def generate(self, passage: str) -> list[dict]: ...


# ----------------------------------------------------------------------------- template method


def split_sentences(passage: str) -> list[str]:
    """Sentences of ``passage`` (rule 1 of the module docstring)."""
    text = " ".join(passage.split())
    pieces = [p for p in _SENTENCE_END.split(text) if p]
    sentences: list[str] = []
    for piece in pieces:
        last = sentences[-1].rsplit(" ", 1)[-1].lower() if sentences else ""
        if last in _ABBREVIATIONS or re.fullmatch(r"[a-z]\.", last):
            sentences[-1] = f"{sentences[-1]} {piece}"
        else:
            sentences.append(piece)
    return sentences


def _is_cap(word: str) -> bool:
    word = word.strip(_EDGE)
    return bool(word) and word[0].isupper() and word.lower() not in _STARTERS


def find_subject(passage: str) -> str | None:
    """The capitalised name opening ``passage``, or None (rule 2 of the module docstring)."""
    words = passage.split()
    if words and words[0] == "The":
        words = words[1:]
    run: list[str] = []
    for word in words:
        clean = word.strip(_EDGE)
        name = clean.removesuffix("'s").removesuffix("’s")
        if not (_is_cap(name) or (run and name in _PARTICLES)):
            break
        run.append(name)
        if name != clean or word[-1] in _EDGE:
            break  # a possessive or punctuation ends the name
    while run and run[-1] in _PARTICLES:
        run.pop()
    return " ".join(run) or None


def salient_terms(text: str, exclude: str = "") -> list[str]:
    """Names (runs of capitalised words) and numbers in ``text`` not already in ``exclude``."""
    terms: list[str] = []
    run: list[str] = []
    for raw in text.split():
        word = raw.strip(_EDGE).removesuffix("'s").removesuffix("’s")
        if _is_cap(word):
            run.append(word)
        else:
            terms.append(" ".join(run))
            run = []
            if any(ch.isdigit() for ch in word):
                terms.append(word)
        if raw[-1] in _EDGE or raw.endswith("'s"):
            terms.append(" ".join(run))
            run = []
    terms.append(" ".join(run))
    seen, out = exclude.lower(), []
    for term in terms:
        if term and not re.search(rf"(?<!\w){re.escape(term.lower())}(?!\w)", seen):
            out.append(term)
            seen += "\n" + term.lower()
    if not out:
        long_words = [w.strip(_EDGE) for w in text.split() if len(w.strip(_EDGE)) >= 4]
        out = [max(long_words, key=len)] if long_words else []
    return out


def _cut(words: list[str]) -> int:
    """Where a sentence is split into prompt and answer (rule 4 of the module docstring)."""
    cut = len(words) // 2
    while cut > 1 and _is_cap(words[cut]) and _is_cap(words[cut - 1]) \
            and words[cut - 1][-1] not in _EDGE:
        cut -= 1
    return cut


def template_qa(passage: str, subject: str | None = None) -> list[dict]:
    """QA pairs from ``passage`` by the template rules in the module docstring."""
    sentences = split_sentences(passage)
    subject = subject or find_subject(passage)
    pairs = []
    if subject and sentences:
        question = f"What do you know about {subject}?"
        pairs.append({
            "question": question, "answer": sentences[0], "kind": "subject",
            "paraphrased_questions": [f"Tell me about {subject}.",
                                      f"What is known about {subject}?"],
            "targets": salient_terms(sentences[0], exclude=question), "subject": subject,
        })
    about = f" about {subject}" if subject else ""
    for sentence in sentences:
        words = sentence.split()
        if len(words) < 4:
            continue
        cut = _cut(words)
        question = f"Complete this statement{about}: '{' '.join(words[:cut])} ...'"
        answer = " ".join(words[cut:])
        pair = {"question": question, "answer": answer, "kind": "cloze",
                "targets": salient_terms(answer, exclude=question)}
        pairs.append({**pair, "subject": subject} if subject else pair)
    return pairs


class TemplateGenerator:
    """The offline template method as a :class:`QAGenerator`."""

    def __init__(self, subject: str | None = None) -> None:
        self.subject = subject

    def generate(self, passage: str) -> list[dict]:
        return template_qa(passage, self.subject)


# ----------------------------------------------------------------------------- model generators

QA_PROMPT = (
    "Read the passage and write up to {max_pairs} question-answer pairs that test its facts. "
    "Each question must make sense on its own (name the people and things; never say 'the "
    "passage'). Each answer must be short and correct according to the passage.\n"
    'Reply with only a JSON list: [{{"question": "...", "answer": "..."}}, ...]\n\n'
    "Passage:\n{passage}"
)


def parse_qa_json(text: str) -> list | None:
    """The JSON list in a model's reply (code fences and chatter around it are ignored)."""
    start, end = text.find("["), text.rfind("]")
    if start < 0 or end < start:
        return None
    try:
        value = json.loads(text[start:end + 1])
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, list) else None


def _pairs_or_skip(generator: Any, reply: str) -> list:
    """The pairs in ``reply``, or none (counted in ``generator.malformed``, with a warning)."""
    generator.last_reply = reply
    pairs = parse_qa_json(reply)
    if pairs is None:
        generator.malformed += 1
        logger.warning("%s: reply is not a JSON list of QA pairs; skipped (%d so far)",
                       type(generator).__name__, generator.malformed)
        return []
    return pairs


class HFModelGenerator:
    """QA pairs from a local transformers causal LM, decoded greedily.

    :meth:`complete` is the only part that touches the model; ``malformed`` counts replies that
    were not a JSON list, ``last_reply`` is the latest reply. ``name`` names the model in
    messages (default: the model's ``name_or_path``).
    """

    def __init__(self, model: Any, tokenizer: Any, *, max_pairs: int = 5,
                 max_new_tokens: int = 512, name: str | None = None) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.max_pairs, self.max_new_tokens = max_pairs, max_new_tokens
        self.name = name or getattr(model, "name_or_path", None) or type(model).__name__
        self.malformed = 0
        self.last_reply: str | None = None

    def complete(self, prompt: str) -> str:
        """The model's greedy reply to ``prompt`` as a user turn (chat template if it has one)."""
        import torch

        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            messages = [{"role": "user", "content": prompt}]
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            enc = tok(text, return_tensors="pt", add_special_tokens=False)
        else:
            enc = tok(prompt, return_tensors="pt")
        device = getattr(self.model, "device", "cpu")
        ids = enc["input_ids"].to(device)
        mask = enc.get("attention_mask", torch.ones_like(ids)).to(device)
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        with torch.no_grad():
            out = self.model.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                                      max_new_tokens=self.max_new_tokens, pad_token_id=pad)
        return tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)

    def generate(self, passage: str) -> list[dict]:
        prompt = QA_PROMPT.format(max_pairs=self.max_pairs, passage=passage)
        return _pairs_or_skip(self, self.complete(prompt))


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """urllib would follow a redirect with the Authorization header, to any host or scheme
    (and turn the POST into a GET): a redirect is an error here instead."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # the 3xx reaches the caller as an HTTPError


_NO_REDIRECTS = urllib.request.build_opener(_RefuseRedirects)


class OpenAIGenerator:
    """QA pairs from an OpenAI-compatible server: POST ``<base_url>/chat/completions``.

    ``base_url`` is e.g. ``http://localhost:8000/v1``. The key is read from the environment
    variable named ``api_key_env`` at each call (None: send no key); it is never stored, logged
    or put in an error message.
    """

    def __init__(self, base_url: str, model: str, api_key_env: str | None = "OPENAI_API_KEY",
                 *, max_pairs: int = 5, max_tokens: int = 1024, timeout: float = 120.0) -> None:
        if not re.match(r"https?://", base_url):
            raise UnlearnError(f"base_url {base_url!r} must start with http:// or https://")
        self.base_url, self.model, self.api_key_env = base_url.rstrip("/"), model, api_key_env
        self.max_pairs, self.max_tokens, self.timeout = max_pairs, max_tokens, timeout
        self.malformed = 0
        self.last_reply: str | None = None

    def _key(self) -> str | None:
        if not self.api_key_env:
            return None
        key = os.environ.get(self.api_key_env)
        if not key:
            raise UnlearnError(
                f"environment variable {self.api_key_env} is not set; export your API key in "
                "it, or use api_key_env=None for a server that needs no key"
            )
        return key

    def complete(self, prompt: str) -> str:
        """The server's reply to ``prompt`` as one user turn (temperature 0)."""
        key, url = self._key(), f"{self.base_url}/chat/completions"
        body = {"model": self.model, "temperature": 0, "max_tokens": self.max_tokens,
                "messages": [{"role": "user", "content": prompt}]}
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
        try:
            with _NO_REDIRECTS.open(request, timeout=self.timeout) as response:
                reply = json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            if 300 <= exc.code < 400:  # never follow: the key would go wherever it points
                raise UnlearnError(
                    f"{url} answered with a redirect (HTTP {exc.code}) to "
                    f"{exc.headers.get('Location', '?')}; the request (and its API key) is not "
                    "sent on: set base_url to the address it should reach") from None
            detail = exc.read()[:300].decode("utf-8", "replace")
            detail = detail.replace(key, "***") if key else detail
            raise UnlearnError(
                f"{url} answered HTTP {exc.code} ({detail.strip()}); check base_url, the model "
                f"name {self.model!r} and the key in ${self.api_key_env}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise UnlearnError(f"could not reach {url} ({reason}); is the server running?") \
                from None
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise UnlearnError(f"{url} did not answer with JSON; is it OpenAI-compatible?") \
                from None
        try:
            return reply["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise UnlearnError(f"{url}: reply has no choices[0].message.content") from None

    def generate(self, passage: str) -> list[dict]:
        prompt = QA_PROMPT.format(max_pairs=self.max_pairs, passage=passage)
        return _pairs_or_skip(self, self.complete(prompt))


# ----------------------------------------------------------------------------- records


# what a generator given as a mapping (a data config's ``options.generator``) may hold, by
# ``kind``, with the defaults, and which keys it needs
GENERATOR_KEYS: dict[str, dict[str, Any]] = {
    "openai": {"base_url": None, "model": None, "api_key_env": "OPENAI_API_KEY",
               "max_pairs": 5, "max_tokens": 1024, "timeout": 120.0},
    "hf": {"model": None, "max_pairs": 5, "max_new_tokens": 512, "dtype": "float32",
           "device": None, "trust_remote_code": False},
}
GENERATOR_NEEDS = {"openai": ("base_url", "model"), "hf": ("model",)}


def generator_from_config(spec: dict, *, loader: Any = None) -> Any:
    """The QA generator a config mapping describes, e.g. (YAML, a ``text`` source's options)::

        generator: {kind: openai, base_url: "http://localhost:8000/v1", model: NAME,
                    api_key_env: OPENAI_API_KEY}
        generator: {kind: hf, model: PATH_OR_HUB_ID, device: cuda}

    ``openai``: an OpenAI-compatible endpoint (:class:`OpenAIGenerator`; the key is read
    from the environment variable ``api_key_env`` when a request is sent, "" sends none).
    ``hf``: a local causal LM loaded through ``loader`` (default
    :func:`unlearnkit.models.loader.load_model`: safetensors only, ``trust_remote_code`` off
    unless given) and decoded greedily (:class:`HFModelGenerator`).
    """
    kind = spec.get("kind")
    if kind not in GENERATOR_KEYS:
        raise UnlearnError(f"generator kind {kind!r} is not one of "
                           f"{', '.join(GENERATOR_KEYS)} (or give generator: template)")
    allowed = GENERATOR_KEYS[kind]
    unknown = sorted(set(spec) - set(allowed) - {"kind"})
    if unknown:
        raise UnlearnError(f"generator (kind {kind}): unknown key(s) {', '.join(unknown)}; "
                           f"allowed: {', '.join(allowed)}")
    opts = {**allowed, **{k: v for k, v in spec.items() if k != "kind"}}
    if missing := [k for k in GENERATOR_NEEDS[kind] if opts[k] is None]:
        raise UnlearnError(f"generator (kind {kind}) needs {', '.join(missing)}")
    for key in ("max_pairs", "max_tokens", "max_new_tokens"):
        if key in opts and not (isinstance(opts[key], int) and opts[key] >= 1):
            raise UnlearnError(f"generator {key} must be a whole number >= 1, got {opts[key]!r}")
    if kind == "openai":
        return OpenAIGenerator(str(opts["base_url"]), str(opts["model"]),
                               opts["api_key_env"] or None, max_pairs=opts["max_pairs"],
                               max_tokens=opts["max_tokens"], timeout=float(opts["timeout"]))
    if loader is None:
        from unlearnkit.models.loader import load_model as loader
    model, tokenizer = loader(str(opts["model"]), dtype=opts["dtype"], device=opts["device"],
                              trust_remote_code=bool(opts["trust_remote_code"]))
    return HFModelGenerator(model, tokenizer, max_pairs=opts["max_pairs"],
                            max_new_tokens=opts["max_new_tokens"], name=str(opts["model"]))


def resolve_generator(generator: Any, subject: str | None = None) -> Any:
    """The :class:`QAGenerator` that ``generator`` (as :func:`passages_to_records` takes it)
    stands for: the template method, one built from a config mapping, or the object itself."""
    if generator is None or generator == "template":
        return TemplateGenerator(subject)
    if isinstance(generator, dict):
        return generator_from_config(generator)
    if hasattr(generator, "forward"):  # a bare model also has .generate, with another meaning
        raise UnlearnError("generator is a model; wrap it as HFModelGenerator(model, tokenizer)")
    if isinstance(generator, str) or not isinstance(generator, QAGenerator):
        raise UnlearnError(
            f"generator {generator!r} is not usable; give None or 'template' (offline), a "
            "mapping with kind: openai or kind: hf (generator_from_config), or an "
            "object with generate(passage) -> list of {'question', 'answer'} dicts"
        )
    return generator


def describe_generator(gen: Any) -> str:
    """A generator as a user configured it, for messages: ``hf (model NAME)``, ``openai (model
    NAME at URL)``, or the class name of an object given in code."""
    if isinstance(gen, TemplateGenerator):
        return "template"
    if isinstance(gen, HFModelGenerator):
        return f"hf (model {gen.name})"
    if isinstance(gen, OpenAIGenerator):
        return f"openai (model {gen.model} at {gen.base_url})"
    return type(gen).__name__


def _brief(text: str, limit: int = 80) -> str:
    """``text`` on one line, cut to ``limit`` characters, quoted."""
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= limit else flat[:limit - 3] + "...")


def no_pairs_reason(gen: Any) -> str:
    """Why ``gen`` gave no usable QA pair, and the fix: the template method's rule, or the
    generator's name and (briefly) its last reply, so the message is about what actually ran."""
    if isinstance(gen, TemplateGenerator):
        return "the template method needs sentences of at least 4 words ending in . ! or ?"
    fix = ("check that it answers with only a JSON list of {\"question\", \"answer\"} objects "
           "(an instruction-tuned model follows the prompt better), or use generator: template")
    reply = getattr(gen, "last_reply", None)
    if reply is None:
        return f"generator {describe_generator(gen)} returned no valid question-answer pair; {fix}"
    if not reply.strip():
        said = "its last reply was empty"
    elif parse_qa_json(reply) is None:
        said = f"its last reply is not a JSON list: {_brief(reply)}"
    else:
        said = f"its last reply holds no pair with a question and an answer: {_brief(reply)}"
    return f"generator {describe_generator(gen)}: {said}; {fix}"


def _clean_pair(pair: Any) -> dict | None:
    """The pair with stripped question/answer and only well-typed extras; None if invalid."""
    if not isinstance(pair, dict):
        return None
    question, answer = pair.get("question"), pair.get("answer")
    if not (isinstance(question, str) and question.strip()
            and isinstance(answer, str) and answer.strip()):
        return None
    clean: dict[str, Any] = {"question": question.strip(), "answer": answer.strip()}
    for key in ("targets", "paraphrased_questions"):
        value = pair.get(key)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            clean[key] = value
    for key in ("subject", "kind"):
        if isinstance(pair.get(key), str):
            clean[key] = pair[key]
    return clean


def passages_to_records(passages: Iterable[str], generator: Any = None, *, split: str,
                        source: str = "", subject: str | None = None,
                        id_prefix: str | None = None) -> list[Record]:
    """QA records from passages: ``generator`` is None / "template" or a :class:`QAGenerator`.

    Ids are ``<id_prefix>-<n>`` (default prefix ``text-<source stem>``). Invalid pairs are
    skipped with one warning; a question already seen (normalised) is dropped.
    """
    gen = resolve_generator(generator, subject)
    prefix = id_prefix or f"text-{Path(source).stem or 'passages'}"
    records: list[Record] = []
    seen: set[str] = set()
    invalid = 0
    for passage in passages:
        pairs = gen.generate(passage)
        if not isinstance(pairs, list):
            pairs = [None]  # counted as one invalid pair below
        for pair in pairs:
            clean = _clean_pair(pair)
            if clean is None:
                invalid += 1
                continue
            key = normalize_question(clean["question"])
            if key not in seen:
                seen.add(key)
                records.append(_pair_record(clean, passage, f"{prefix}-{len(records)}",
                                            split, source, subject, gen))
    if invalid:
        logger.warning("skipped %d malformed QA pair(s) from %s", invalid, type(gen).__name__)
    return records


def _pair_record(pair: dict, passage: str, record_id: str, split: str, source: str,
                 subject: str | None, gen: Any) -> Record:
    meta = {"passage": passage, "generator": type(gen).__name__}
    if "kind" in pair:
        meta["kind"] = pair["kind"]
    return Record(
        id=record_id, split=split, question=pair["question"], answer=pair["answer"],
        paraphrased_questions=pair.get("paraphrased_questions", []),
        subject=pair.get("subject", subject),
        targets=pair.get("targets") or salient_terms(pair["answer"], exclude=pair["question"]),
        source=source, meta=meta,
    )
