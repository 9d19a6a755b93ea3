"""Read a user's query the way a clinician means it, and rewrite it in Whoosh query syntax.

What is recognised, in this order, in each run of plain words (nothing here imports Whoosh):

* identifiers: DOIs (bare, `doi:`, https://doi.org/...), PMIDs (`pmid:`, `PMID: 123`, a bare
  7-8 digit number), PMCIDs, NCT and Cochrane numbers, citation keys (`@key`);
* field words, when the reading is clear: `level A`, `class II`, years and ranges (`2015-2020`,
  `since 2019`), Cochrane, guideline, review / meta-analysis, RCT, trials, studies,
  sham-controlled, and grades in a source's own scale (`third-line`, `GRADE low certainty`);
  `literal` searches these as words instead;
* vocabulary terms in any language (`(original OR concepts:<id>)`), also written without their
  small words ('douleur membre fantome' for 'douleur du membre fantôme');
* family names of first authors (`Lefaucheur`, `andre-obadia`, `André-Obadia N`);
* question words ("does rTMS work for ...") when the query is asked as a question, and the
  intent of "how many sessions" (dose) and "how long does it last" (maintenance).

Every reading is listed in Understood.expansions ("How we read your query"). `suggest_names`
corrects misspelt vocabulary names as a whole ('neuropathc pian' -> 'neuropathic pain').
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .errors import QueryError
from .fields import DOSE_BY_NAME, FACETS, DoseNumber
from .vocab import Vocabularies, fold

MAX_QUERY_LENGTH = 500
MAX_NGRAM = 6
OPERATORS = {"AND", "OR", "NOT", "ANDNOT", "ANDMAYBE"}
# Dropped from unquoted words only: they would otherwise be required terms (phrases keep them).
STOP_WORDS = frozenset(
    "a an and are as at be by for from in into is of on or the to with de des du la le les et en "
    "pour par sur un une dans".split()
)
# Words of a clinician's question that name no content: "how many sessions ..." asks about dose.
QUESTION_WORDS = frozenset("how many much".split())
# A query starting with one of these is a question; then ASKED words name no content either
# ("does rTMS work for sciatica" asks for rTMS AND sciatica). Elsewhere they stay required.
QUESTION_STARTERS = frozenset(
    "does do did is are was were can could will would should may might how what which when why who".split()
)
ASKED = QUESTION_STARTERS | frozenset(
    "work works working help helps helpful effective effectiveness efficacious useful good best better "
    "worth really there any evidence relieve relieves treat treats treatment option options target "
    "targets site after it this that".split()
)
DURATION_WORDS = frozenset("long last lasts lasting persist persists".split())
# Dose words: shown as understood (every study hit carries its dose), not required as text.
DOSE_WORDS = {
    "sessions": "number of sessions",
    "session": "number of sessions",
    "dose": "dose",
    "dosage": "dose",
    "pulses": "pulses per session",
    "séances": "number of sessions",
    "疗程": "number of sessions",
    "療程": "number of sessions",
}
UNIT_WORDS = frozenset("hz pulses pulse sessions session patients ms mt %".split())
# `pulses:[1000 TO 3000]` (Whoosh's range syntax, with spaces) as one token, before tokenising.
DOSE_RANGE = re.compile(r"\b([A-Za-z_]+):\[\s*([\d.]*)\s+TO\s+([\d.]*)\s*\]", re.IGNORECASE)
DOSE_VALUE = re.compile(r"^(?:(>=|<=|>|<)?(\d+(?:\.\d+)?)|(\d+(?:\.\d+)?)?\.\.(\d+(?:\.\d+)?)?)$")
CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
TOKEN = re.compile(r'[A-Za-z_]+:"[^"]*"?|"[^"]*"?|[()]|[^\s()"]+')
FIELDED = re.compile(r"^([A-Za-z_]+):(.*)$", re.DOTALL)

# -- identifiers -------------------------------------------------------------------------------
ID_FIELDS = ("doi", "pmid", "pmcid", "nct", "key")
SPACED_ID = re.compile(r"\b(doi|pmid|pmcid|nct)\s*:\s+(?=\S)", re.IGNORECASE)  # 'PMID: 123'
URLS = (
    (re.compile(r"https?://(?:dx\.)?doi\.org/(\S+)", re.IGNORECASE), "doi"),
    (re.compile(r"https?://(?:www\.)?pubmed\.ncbi\.nlm\.nih\.gov/(\d+)/?", re.IGNORECASE), "pmid"),
    (re.compile(r"https?://(?:www\.)?ncbi\.nlm\.nih\.gov/pubmed/(\d+)/?", re.IGNORECASE), "pmid"),
    (
        re.compile(
            r"https?://(?:www\.)?(?:ncbi\.nlm\.nih\.gov/pmc|pmc\.ncbi\.nlm\.nih\.gov)/articles/(PMC\d+)/?",
            re.I,
        ),
        "pmcid",
    ),
    (re.compile(r"https?://(?:www\.)?clinicaltrials\.gov/\S*?(NCT\d{8})\S*", re.IGNORECASE), "nct"),
)
OTHER_URL = re.compile(r"https?://(\S+)", re.IGNORECASE)
BARE_IDS = (
    (re.compile(r"^(?:doi:)?(10\.\d{4,9}/\S+?)[.,;]?$", re.IGNORECASE), "DOI", False),
    (re.compile(r"^(pmc\d{4,9})$", re.IGNORECASE), "PMCID", False),
    (re.compile(r"^(nct\d{8})$", re.IGNORECASE), "NCT number", False),
    (re.compile(r"^(cd\d{6})$", re.IGNORECASE), "Cochrane review number", True),
    (re.compile(r"^(\d{7,8})$"), "PMID", True),
    (re.compile(r"^@([a-z][\w'.-]*)$", re.IGNORECASE), "citation key", False),
    (re.compile(r"^([a-z][a-z'-]*\d{4}[a-z0-9-]*)$", re.IGNORECASE), "citation key", True),
)

# -- field words -------------------------------------------------------------------------------
ROMAN = {"1": "I", "2": "II", "3": "III", "4": "IV", "i": "I", "ii": "II", "iii": "III", "iv": "IV"}
YEAR = r"((?:19|20)\d\d)"
COCHRANE = "identifiers:10.1002/14651858*"  # every Cochrane review's DOI starts with the Library's
GUIDELINES = "(type:recommendation OR ((type:reference OR type:verdict) AND guideline))"
REVIEWS = (
    "((type:verdict OR type:reference) AND "
    '(metaanalysis OR metaanalyses OR "meta analysis" OR "meta analyses" OR review))'
)
CONTROLLED = " OR ".join(
    f"concepts:{d}"
    for d in (
        "parallel-rct",
        "crossover-rct",
        "controlled-non-randomised",
        "sham-controlled-unspecified",
        "active-controlled-unspecified",
    )
)
WORD_FILTERS: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], tuple[str, str]]], ...] = (
    (re.compile(r"^levels? ([abc])$"), lambda m: (f"level:{m[1].upper()}", f"Level {m[1].upper()}")),
    (
        re.compile(r"^class (iv|iii|ii|i|[1-4])$"),
        lambda m: (f"class:{ROMAN[m[1]]}", f"Class {ROMAN[m[1]]}"),
    ),
    (re.compile(rf"^{YEAR} ?(?:-|–|—|to) ?{YEAR}$"), lambda m: _years(m[1], m[2])),
    (re.compile(rf"^between {YEAR} and {YEAR}$"), lambda m: _years(m[1], m[2])),
    (re.compile(rf"^(?:since|from) {YEAR}$"), lambda m: _years(m[1], "")),
    (re.compile(rf"^{YEAR} (?:onwards?|and later)$"), lambda m: _years(m[1], "")),
    (re.compile(rf"^after {YEAR}$"), lambda m: _years(str(int(m[1]) + 1), "")),
    (re.compile(rf"^(?:until|till|up to) {YEAR}$"), lambda m: _years("", m[1])),
    (re.compile(rf"^before {YEAR}$"), lambda m: _years("", str(int(m[1]) - 1))),
    (re.compile(r"^cochrane(?: reviews?| library| database)?$"), lambda m: (COCHRANE, "Cochrane reviews")),
    (
        re.compile(r"^(?:meta ?analys[ie]s|systematic reviews?|reviews?)$"),
        lambda m: (REVIEWS, "meta-analyses and systematic reviews"),
    ),
    (
        re.compile(r"^(?:rcts?|randomi[sz]ed controlled trials?|randomi[sz]ed trials?)$"),
        lambda m: ("(concepts:parallel-rct OR concepts:crossover-rct)", "randomised controlled trials"),
    ),
    (re.compile(r"^(?:controlled |clinical )?trials?$"), lambda m: (f"({CONTROLLED})", "controlled trials")),
    (re.compile(r"^stud(?:y|ies)$"), lambda m: ("type:study", "studies")),
    (
        re.compile(r"^guidelines?(?: recommendations?)?$"),
        lambda m: (GUIDELINES, "guidelines and their recommendations"),
    ),
    (
        re.compile(r"^sham controlled(?: stud(?:y|ies)| trials?)?$"),
        lambda m: ("(type:study AND sham)", "sham-controlled studies"),
    ),
)
PLAIN_WORDS = frozenset("quality evidence level levels of".split())  # never name a grade's scale alone
HERTZ = re.compile(r"^(\d+(?:\.\d+)?) ?hz$")


def _years(low: str, high: str) -> tuple[str, str]:
    label = (
        f"published {low}-{high}"
        if low and high
        else f"published since {low}"
        if low
        else f"published until {high}"
    )
    return f"year:[{low or '0000'} TO {high or '9999'}]", label


@dataclass(frozen=True)
class Expansion:
    """One piece of the query and how it was read: a vocabulary term, or (vocabulary "filter",
    "identifier", "author", "intent", "spelling") another reading."""

    text: str
    vocabulary: str
    term_id: str
    label: str
    broader: tuple[str, ...] = ()  # broader conditions whose questions and verdicts also answer


COVERS = re.compile(r" OR covers:[\w.-]+")
READINGS = frozenset({"filter", "identifier", "author", "intent", "dose", "spelling"})


@dataclass(frozen=True)
class Understood:
    """The query rewritten for the engine, and what was recognised in it."""

    text: str
    expansions: tuple[Expansion, ...]
    identifiers: tuple[str, ...] = ()  # clauses: their documents come first
    authors: tuple[str, ...] = ()  # author keys: their first-authored papers come next
    prefer: tuple[str, ...] = ()  # clauses whose documents come before the others' (intents)

    @property
    def specific_text(self) -> str:
        """The query without the broader-condition clauses: what matches the condition itself."""
        return COVERS.sub("", self.text)

    @property
    def broader(self) -> dict[str, str]:
        """Broader condition id -> the narrower condition the query named (for labels)."""
        return {b: e.term_id for e in self.expansions for b in e.broader}

    @property
    def terms(self) -> list[Expansion]:
        """The vocabulary terms named (not the other readings)."""
        return [e for e in self.expansions if e.vocabulary not in READINGS]


@dataclass
class Context:
    """What reading a query needs to know about an index besides its vocabularies (one per
    generation: engine.Generation.context)."""

    vocab: Vocabularies
    is_author: Callable[[str], bool] = lambda key: False
    grades: Mapping[str, str] = field(default_factory=dict)  # grade value -> its label
    _names: dict[str, list[tuple[str, str]]] | None = None
    _grade_phrases: list[tuple[frozenset[str], frozenset[str], str, str]] | None = None
    _by_length: dict[int, list[str]] | None = None

    @property
    def names_by_length(self) -> dict[int, list[str]]:
        """Alphabetic vocabulary names (folded, 4 letters or more) by length, for spelling."""
        if self._by_length is None:
            self._by_length = {}
            for name, _, _ in self.vocab.names():
                if all(w.isalpha() for w in name.split()) and len(name) >= 4:
                    self._by_length.setdefault(len(name), []).append(name)
        return self._by_length

    @property
    def short_names(self) -> dict[str, list[tuple[str, str]]]:
        """Vocabulary names without their small words ('douleur membre fantome') -> terms."""
        if self._names is None:
            self._names = {}
            for name, vocabulary, term_id in self.vocab.names():
                short = _content(name)
                if short != name and len(short.split()) > 1:
                    self._names.setdefault(short, []).append((vocabulary, term_id))
        return self._names

    @property
    def grade_phrases(self) -> list[tuple[frozenset[str], frozenset[str], str, str]]:
        """(value words, scale words, grade value, label) of every grade but Lefaucheur levels
        (`level A` reads those). Scale words are those that name the scale ('GRADE',
        'certainty'), not everyday ones: 'high quality evidence' is no GRADE grade."""
        if self._grade_phrases is None:
            self._grade_phrases = []
            for value, label in self.grades.items():
                scale_name, _, value_label = label.partition(": ")
                if value.startswith("lefaucheur-level:") or not value_label:
                    continue
                words = frozenset(fold(re.sub(r"\(.*?\)", "", value_label)).split())
                scale = frozenset(fold(re.sub(r"[()/,]", " ", scale_name)).split()) - STOP_WORDS - PLAIN_WORDS
                self._grade_phrases.append((words, scale, value, label))
        return self._grade_phrases


def understand(
    text: str, vocab: Vocabularies, context: Context | None = None, *, literal: bool = False
) -> Understood:
    """Rewrite `text` for the engine (see the module docstring); QueryError for an unusable query.

    `literal`: field words are searched as words."""
    if len(text) > MAX_QUERY_LENGTH:
        raise QueryError(f"query is {len(text)} characters long; the limit is {MAX_QUERY_LENGTH}")
    reader = _Reader(context or Context(vocab), literal)
    text = DOSE_RANGE.sub(lambda m: f"{m.group(1)}:{m.group(2)}..{m.group(3)}", text)
    text = SPACED_ID.sub(lambda m: f"{m.group(1)}:", text)
    for pattern, name in URLS:
        text = pattern.sub(f"{name}:\\1", text)
    text = OTHER_URL.sub(lambda m: '"' + m.group(1).replace('"', "") + '"', text)
    tokens = TOKEN.findall(text)
    for token, following in zip(tokens, tokens[1:], strict=False):
        if token == "NOT" and following in OPERATORS:  # Whoosh's parser crashes on these
            raise QueryError(f"'NOT {following}': NOT must be followed by a word, phrase or group")
        if token in ("ANDNOT", "ANDMAYBE") and following in ("ANDNOT", "ANDMAYBE"):  # and these
            raise QueryError(f"'{token} {following}': {token} must be followed by a word, phrase or group")
    asked = _asked(tokens)
    if asked and tokens[-1].endswith("?") and is_plain_word(tokens[-1]):  # 'does it work for TN?'
        tokens[-1] = tokens[-1].rstrip("?")
        tokens = [t for t in tokens if t]
    out: list[str] = []
    words: list[str] = []
    for token in tokens:
        if is_plain_word(token):
            words.append(token)
            continue
        out += reader.words(words, asked)
        words = []
        out.append(reader.token(token))
    out += reader.words(words, asked)
    return Understood(
        " ".join(out),
        tuple(reader.found),
        tuple(reader.identifiers),
        tuple(reader.authors),
        tuple(reader.prefer),
    )


def is_plain_word(token: str) -> bool:
    """A word, not syntax; 'sciatica:' (a colon and nothing after, as in a sentence) is a word."""
    if token in OPERATORS or token in "()" or token.startswith('"'):
        return False
    field = FIELDED.match(token)
    return field is None or (not field.group(2) and field.group(1).lower() not in FACETS.query_fields())


def _asked(tokens: list[str]) -> bool:
    """The query is asked as a question: its first word is a question word, or it ends with '?'."""
    first = next((t for t in tokens if is_plain_word(t)), "")
    return len(tokens) > 1 and (first.lower() in QUESTION_STARTERS or tokens[-1].endswith("?"))


def _content(folded: str) -> str:
    return " ".join(w for w in folded.split() if w not in STOP_WORDS)


class _Reader:
    """One pass over a query's tokens, collecting what was read."""

    def __init__(self, context: Context, literal: bool) -> None:
        self.context, self.vocab, self.literal = context, context.vocab, literal
        self.found: list[Expansion] = []
        self.identifiers: list[str] = []
        self.authors: list[str] = []
        self.prefer: list[str] = []

    # -- runs of plain words -------------------------------------------------------------------

    def words(self, words: list[str], asked: bool) -> list[str]:
        """Longest readings first over a run of plain words."""
        out: list[str] = []
        i = 0
        duration = asked and any(w.lower() == "long" for w in words) and words[0].lower() == "how"
        if duration:
            out.append(self._duration(words))
        while i < len(words):
            size, clause = self._reading(words, i, asked)
            if size:
                if clause:
                    out.append(clause)
                i += size
                continue
            word = words[i].lower()
            if word in DOSE_WORDS:
                self.found.append(Expansion(words[i], "dose", word, DOSE_WORDS[word]))
            elif duration and word in DURATION_WORDS:
                pass
            elif word not in STOP_WORDS and word not in QUESTION_WORDS and not (asked and word in ASKED):
                out.append(self._cjk(words[i]))
            i += 1
        return out

    def _reading(self, words: list[str], i: int, asked: bool) -> tuple[int, str]:
        """(words used, clause) of the longest reading starting at words[i]; (0, '') if none."""
        clause = self._identifier(words[i])
        if clause:
            return 1, clause
        for size in range(min(MAX_NGRAM, len(words) - i), 0, -1):
            span = " ".join(w.strip(",;:.!") or w for w in words[i : i + size])  # 'sciatica:', 'pain,'
            if not self.literal:
                clause = self._field_word(span, words[i + size : i + size + 1])
                if clause:
                    return size, clause
            terms = self._lookup(span)
            if terms:
                return size, self._group(span, terms)
        for size in range(min(3, len(words) - i), 0, -1):
            author = self._author(words, i, size)
            if author is not None:
                return author
        return 0, ""

    def _identifier(self, word: str) -> str:
        for pattern, kind, also_word in BARE_IDS:
            match = pattern.match(word)
            if match:
                value = match.group(1).lower()
                clause = self._id_clause(value, f"{kind} {match.group(1)}", word)
                return f"({word} OR {clause})" if also_word else clause
        return ""

    def _id_clause(self, value: str, label: str, text: str) -> str:
        clause = 'identifiers:"' + value.replace('"', "") + '"'
        self.identifiers.append(clause)
        self.found.append(Expansion(text, "identifier", value, label))
        return clause

    def _field_word(self, span: str, following: list[str]) -> str:
        """A field word or phrase read as a filter; '' if the span is not one."""
        folded = fold(span)
        raw = span.lower()
        if re.fullmatch(YEAR, folded) and not (following and following[0].lower() in UNIT_WORDS):
            return self._filter(span, f"year:{folded}", f"published {folded}")
        for pattern, reading in WORD_FILTERS:
            match = pattern.match(folded) or pattern.match(raw)
            if match:
                return self._filter(span, *reading(match))
        hertz = HERTZ.match(folded.replace(" ", "") if folded.endswith("hz") else "")
        if hertz:
            return self._hertz(span, float(hertz.group(1)))
        return self._grade(span, folded)

    def _filter(self, span: str, clause: str, label: str) -> str:
        self.found.append(Expansion(span, "filter", clause, label))
        return clause

    def _hertz(self, span: str, hz: float) -> str:
        """'10 Hz' is high-frequency rTMS (and studies with a 10 Hz arm)."""
        protocol = "hf-rtms" if hz > 1 else "lf-rtms"
        number = DOSE_BY_NAME["frequency"]
        label = self.vocab.label("protocols", protocol)
        self.found.append(Expansion(span, "protocols", protocol, label))
        words = " ".join(span.replace("Hz", " Hz").replace("hz", " hz").split())  # not a phrase: slow
        return f"(({words}) OR concepts:{protocol} OR {number.field}:{number.term(hz)})"

    def _grade(self, span: str, folded: str) -> str:
        """A grade in a source's own scale: 'third-line', 'GRADE low certainty', 'weak recommendation'."""
        words = set(folded.split())
        for value_words, scale_words, value, label in self.context.grade_phrases:
            if not value_words <= words:
                continue
            rest = words - value_words
            alone = len(value_words) > 1  # 'third line' needs no scale word; 'low' does
            if (rest and rest <= scale_words) or (not rest and alone):
                return self._filter(span, f'grade:"{value}"', label)
        return ""

    def _lookup(self, text: str) -> list[tuple[str, str]]:
        """(vocabulary, term id) for every vocabulary that has `text` as a name, also written
        without its small words."""
        key = fold(text)
        hits = []
        for vocabulary in self.vocab.terms:
            term = self.vocab.resolve(vocabulary, key)
            if term is not None:
                hits.append((vocabulary, term.id))
        if not hits and " " in key:
            hits = list(self.context.short_names.get(_content(key), []))
        return hits

    def _group(self, original: str, terms: list[tuple[str, str]]) -> str:
        """`(original OR concepts:id ...)`; several plain words stay ANDed inside their own group."""
        covers: list[str] = []
        for vocabulary, term_id in terms:
            broader = tuple(self.vocab.ancestors(vocabulary, term_id)) if vocabulary == "indications" else ()
            self.found.append(
                Expansion(original, vocabulary, term_id, self.vocab.label(vocabulary, term_id), broader)
            )
            covers += [f"covers:{b}" for b in broader if f"covers:{b}" not in covers]
        words = f"({original})" if " " in original and not original.startswith('"') else original
        return "(" + " OR ".join([words, *(f"concepts:{term_id}" for _, term_id in terms), *covers]) + ")"

    def _author(self, words: list[str], i: int, size: int) -> tuple[int, str] | None:
        """A first author's family name (with initials after it): `Lefaucheur`, `andre-obadia`,
        `Gurdiel Alvarez`, `André-Obadia N`. Lower-case only when the name is the whole query,
        so an ordinary word ('short', 'long') is never taken for a name inside a sentence."""
        span = words[i : i + size]
        if not all(re.fullmatch(r"[^\W\d_][\w'’-]*", w) for w in span) or fold(span[0]) in STOP_WORDS:
            return None
        key = author_key(" ".join(span))
        if len(key) < 2 or not self.context.is_author(key):
            return None
        rest = [w for j, w in enumerate(words) if not i <= j < i + size and not re.fullmatch(YEAR, w)]
        initials = words[i + size] if i + size < len(words) and INITIALS.fullmatch(words[i + size]) else ""
        with_initials = f"{key}_{initials.replace('.', '').lower()}"
        if initials and (self.context.is_author(with_initials) or self.context.is_author(f"{key}_")):
            key, size, rest = with_initials, size + 1, rest[1:]
        elif not any(w[:1].isupper() for w in span) and rest:
            return None
        shown = " ".join(words[i : i + size])
        if "_" in key:
            return size, self._author_clause(shown, key)
        self.authors.append(key)
        self.found.append(Expansion(shown, "author", key, f"{shown} (author)"))
        text = " ".join(span)
        return size, f"({'(' + text + ')' if size > 1 else text} OR author_keys:{key})"

    def _author_clause(self, shown: str, key: str) -> str:
        """An author with initials: those initials, or none recorded ('andreobadia_n' or
        'andreobadia_')."""
        family = key.split("_")[0]
        keys = [key, f"{family}_"] if "_" in key else [key]
        self.authors.extend(keys)
        self.found.append(Expansion(shown, "author", key, f"{shown} (author)"))
        return (
            "(" + " OR ".join(f"author_keys:{k}" for k in keys) + ")"
            if len(keys) > 1
            else f"author_keys:{key}"
        )

    def _duration(self, words: list[str]) -> str:
        """'how long does pain relief last': the maintenance of the effect."""
        self.found.append(Expansion(" ".join(words[:2]), "intent", "duration", "how long the effect lasts"))
        self.prefer.append("maintenance")
        return '(maintenance OR "long term" OR "long lasting" OR longlasting OR sustained OR durable)'

    def _cjk(self, word: str) -> str:
        """Chinese is written without spaces: the longest vocabulary names inside the word, each
        character read once ('三叉神經痛' is trigeminal neuralgia, not also 神經痛)."""
        if not CJK.search(word):
            return word
        names = sorted(
            ((name, v, t) for name, v, t in self.vocab.names() if CJK.search(name) and name in word),
            key=lambda item: -len(item[0]),
        )
        taken: list[tuple[int, int]] = []
        terms: list[tuple[str, str]] = []
        for name, vocabulary, term_id in names:
            start = word.find(name)
            while start >= 0 and any(start < e and s < start + len(name) for s, e in taken):
                start = word.find(name, start + 1)
            if start >= 0:
                taken.append((start, start + len(name)))
                terms.append((vocabulary, term_id))
        return self._group(word, list(dict.fromkeys(terms))) if terms else word

    # -- other tokens --------------------------------------------------------------------------

    def token(self, token: str) -> str:
        if token.startswith('"'):
            inner = token.strip('"')
            terms = self._lookup(inner) if inner else []
            return self._group(f'"{inner}"', terms) if terms else token
        match = FIELDED.match(token)
        if not match:
            return token
        name, value = match.group(1).lower(), match.group(2)
        if name in ID_FIELDS and value.strip('"'):
            return self._id_clause(
                _id_value(name, value.strip('"')), f"{name.upper()} {value.strip(chr(34))}", token
            )
        if name == "author" and value.strip('"'):
            return self._author_field(value.strip('"'), token)
        number = DOSE_BY_NAME.get(name)
        if number is not None and DOSE_VALUE.match(value):
            return _dose_query(number, value)
        if number is not None and number.name not in FACETS:
            raise QueryError(
                f"'{name}:{value}' is not a number or a range "
                f"(e.g. {name}:10, {name}:>=5, {name}:[5 TO 20]; unit: {number.unit})"
            )
        known = FACETS.query_fields()
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=1)
            hint = f" (did you mean '{close[0]}:'?)" if close else f" (fields: {', '.join(known)})"
            raise QueryError(f"unknown field '{name}'{hint}")
        field_name = FACETS.field_of(name)
        vocabulary = known[name]
        if vocabulary and value:
            resolved = f"{field_name}:{self._resolve_value(name, vocabulary, value)}"
            broader = self.found[-1].broader
            return f"({' OR '.join([resolved, *(f'covers:{b}' for b in broader)])})" if broader else resolved
        if field_name == "year" and YEAR_VALUE.match(value):  # year:2015..2020, year:>=2019
            return _year_query(value)
        facet = FACETS.get(field_name)
        if facet is not None and facet.values is not None and value and not set(value) & set('"*?[]{}()'):
            value = facet.normalise(value, self.vocab)
        if ":" in value and not value.startswith('"'):  # 'grade:line-of-therapy:third-line'
            value = '"' + value.replace('"', "") + '"'
        return f"{field_name}:{value}"

    def _author_field(self, value: str, token: str) -> str:
        """`author:thomas` is the family name Thomas (never a given name); `author:"andre-obadia n"`
        adds initials."""
        words = value.split()
        last = words[-1].replace(".", "") if words else ""
        initials = last if len(words) > 1 and last.isalpha() and len(last) <= 3 else ""
        key = author_key(" ".join(words[:-1] if initials else words))
        if not key:
            return "author_keys:_"  # no family name in the value: matches nothing
        return self._author_clause(value, f"{key}_{initials.lower()}" if initials else key)

    def _resolve_value(self, name: str, vocabulary: str, value: str) -> str:
        term = self.vocab.resolve(vocabulary, value.strip('"'))
        if term is None:
            close = self.vocab.suggest(vocabulary, value.strip('"'))
            hint = f" (did you mean '{close}'?)" if close else ""
            raise QueryError(f"'{value.strip(chr(34))}' is not a known {name}{hint}")
        broader = tuple(self.vocab.ancestors(vocabulary, term.id)) if vocabulary == "indications" else ()
        self.found.append(Expansion(value, vocabulary, term.id, term.label, broader))
        return term.id


INITIALS = re.compile(r"(?:[A-Z]\.?){1,3}")


def author_key(name: str) -> str:
    """The index's key of a family name: folded, without spaces, hyphens or apostrophes
    ('André-Obadia' -> 'andreobadia'); documents.author_keys writes the same."""
    return "".join(fold(name).replace(".", " ").split())


def _id_value(name: str, value: str) -> str:
    """An identifier as the index holds it: lower-case DOI without resolver, PMID digits,
    PMCID with its PMC prefix."""
    value = value.strip().rstrip(".,;").lower()
    if name == "doi":
        value = re.sub(r"^(?:https?://)?(?:dx\.)?doi\.org/", "", value)
    if name == "pmcid" and value.isdigit():
        value = f"pmc{value}"
    if name == "key":
        value = value.lstrip("@")
    return value


YEAR_VALUE = re.compile(r"^(?:(>=|<=|>|<)(\d{4})|(\d{4})?\.\.(\d{4})?)$")


def _year_query(value: str) -> str:
    """`year:2015..2020` (also written `year:[2015 TO 2020]`), `year:>=2019` as a range of years."""
    match = YEAR_VALUE.match(value)
    assert match is not None
    op, year, low, high = match.groups()
    if op:
        y = int(year)
        low, high = {">=": (y, None), ">": (y + 1, None), "<=": (None, y), "<": (None, y - 1)}[op]
    return f"year:[{low or '0000'} TO {high or '9999'}]"


def _dose_query(number: DoseNumber, value: str) -> str:
    """`sessions:>=10` -> a range of the zero-padded terms the index holds for that parameter."""
    match = DOSE_VALUE.match(value)
    assert match is not None
    op, single, low, high = match.groups()
    bottom, top = number.term(0), number.top
    if single is not None:
        x = float(single)
        if not op:
            return f"{number.field}:{number.term(x)}"
        step = 1 / number.scale  # > and < exclude the value itself, at the field's precision
        bounds = {
            ">=": (number.term(x), top),
            ">": (number.term(x + step), top),
            "<=": (bottom, number.term(x)),
            "<": (bottom, number.term(max(0.0, x - step))),
        }[op]
    else:
        if low and high and float(low) > float(high):
            raise QueryError(f"'{number.name}:{value}': the lower bound is above the upper one")
        bounds = (number.term(float(low)) if low else bottom, number.term(float(high)) if high else top)
    return f"{number.field}:[{bounds[0]} TO {bounds[1]}]"


# -- spelling: whole vocabulary names ----------------------------------------------------------


def suggest_names(text: str, context: Context, known: Callable[[str], bool]) -> str:
    """`text` with misspelt vocabulary names replaced by the closest name ('neuropathc pian' ->
    'neuropathic pain', 'phantom limp pain' -> 'phantom limb pain'). A span is replaced only if
    one of its words is unknown (`known` says which words the index or the vocabularies hold)
    or it is a near miss of a name of several words; a correct word alone is never changed."""
    matches = list(TOKEN.finditer(text))
    names = context.names_by_length
    out, end, i = [], 0, 0
    while i < len(matches):
        for size in range(min(MAX_NGRAM, len(matches) - i), 0, -1):
            span = [m.group() for m in matches[i : i + size]]
            if not all(is_plain_word(t) and t.isalpha() for t in span):
                continue
            unknown = [w for w in span if not known(w.lower())]
            if not unknown and size == 1:
                continue
            best = _closest(fold(" ".join(span)), names, strict=not unknown)
            if best:  # spliced into the text as typed, so spaces and brackets stay where they were
                out += [text[end : matches[i].start()], best]
                end = matches[i + size - 1].end()
                i += size
                break
        else:
            i += 1
    return "".join([*out, text[end:]])


def _closest(span: str, names: dict[int, list[str]], *, strict: bool) -> str | None:
    """The vocabulary name nearest `span` within a few edits (one per ~6 letters, at most 3; one
    only when every word of the span is a real word), or None."""
    limit = 1 if strict else min(3, max(1, len(span) // 6))
    if strict and " " not in span:
        return None
    best: tuple[int, str] | None = None
    for length in range(len(span) - limit, len(span) + limit + 1):
        for name in names.get(length, ()):
            if name == span or name.count(" ") != span.count(" "):
                continue
            distance = edit_distance(span, name, limit)
            if distance <= limit and (best is None or distance < best[0]):
                best = (distance, name)
    return best[1] if best else None


def edit_distance(a: str, b: str, limit: int = 3) -> int:
    """Damerau-Levenshtein distance (a swap of two letters is one edit), or limit + 1 once it is
    certain to exceed `limit`."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cost = ca != cb
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        previous2, previous = previous, current
    return previous[-1]
