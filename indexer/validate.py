"""Cross-file rules: keys resolve, vocabulary ids exist, links point at real records."""

from __future__ import annotations

import contextlib
import difflib
import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Set
from dataclasses import dataclass
from functools import partial
from typing import Any

from .models import Knowledge, Problem, Question, Recommendation, Record, Reference, Scale, Study, Verdict
from .vocab import FIELD_VOCABULARY, Vocabularies, check_ids


def check(
    references: dict[str, Reference],
    records: list[Record],
    vocab: Vocabularies,
    unreadable: Set[str] = frozenset(),
    aliases: Mapping[str, str] | None = None,
    drafts: Iterable[Record] = (),
    repaired: Mapping[str, Set[str]] | None = None,
    memo: Callable[..., contextlib.AbstractContextManager[Any]] | None = None,
) -> list[Problem]:
    """Every cross-file problem: duplicates, unknown keys, unknown terms, broken links.

    Links to `unreadable` record files are not reported: their own problems already are.
    `drafts` (records with schema problems, built from stand-ins) are checked too, except at
    their `repaired` paths (by record path), whose problems the schema check reported.
    """
    context = _Context(
        references,
        vocab,
        aliases or {},
        studies={r.id for r in records if isinstance(r, Study)} | set(unreadable),
        questions={r.id for r in records if isinstance(r, Question)} | set(unreadable),
        scales={r.id: r for r in records if isinstance(r, Scale)},
        unreadable=unreadable,
    )
    problems = _duplicate_ids(records)
    if memo is None:
        for record in records:
            problems += _record_problems(record, context)
    else:  # a record's problems only change with it or with what it is checked against
        with memo("checks", _context_key(context)) as known:
            for record in records:
                problems += known.get(record.path, partial(_record_problems, record, context))
    for draft in drafts:
        skip = (repaired or {}).get(draft.path, frozenset())
        problems += [p for p in _record_problems(draft, context) if not _under(p.field, skip)]
    return problems


def problems_of(
    changed: Iterable[Record],
    references: Mapping[str, Reference],
    vocab: Vocabularies,
    aliases: Mapping[str, str],
    ids: Mapping[str, str],
    scales: Mapping[str, Scale],
) -> list[Problem]:
    """What check() reports for these records in a KB whose other records are unchanged and
    had no problems, the records keeping their ids and types (`ids`: record id -> its type,
    as models.record_kind names it); duplicates cannot arise then. The delta build uses it."""
    context = _Context(
        references,
        vocab,
        aliases,
        studies={i for i, kind in ids.items() if kind == "study"},
        questions={i for i, kind in ids.items() if kind == "question"},
        scales=scales,
        unreadable=frozenset(),
    )
    return [problem for record in changed for problem in _record_problems(record, context)]


@dataclass(frozen=True)
class _Context:
    """What a record's cross-file checks look things up in."""

    references: Mapping[str, Reference]
    vocab: Vocabularies
    aliases: Mapping[str, str]
    studies: Set[str]
    questions: Set[str]
    scales: Mapping[str, Scale]
    unreadable: Set[str]


def _context_key(context: _Context) -> str:
    """What the problems of each record depend on besides the record (for memo in check)."""
    digest = hashlib.sha256()
    for part in (
        sorted(context.references),
        sorted(context.aliases.items()),
        context.vocab.to_json(),
        sorted(context.studies),
        sorted(context.questions),
        sorted((k, repr(v)) for k, v in context.scales.items()),
        sorted(context.unreadable),
    ):
        digest.update(repr(part).encode() + b"\0")
    return digest.hexdigest()


def _under(field: str, paths: Set[str]) -> bool:
    """True if `field` is one of `paths`, inside one, or contains one."""
    return any(field == p or field.startswith(p + ".") or p.startswith(field + ".") for p in paths)


def _record_problems(record: Record, context: _Context) -> list[Problem]:
    """The cross-file problems of one record."""
    problems = _key_problems(record, context.references, context.aliases)
    problems += _term_problems(record, context.vocab)
    if isinstance(record, Recommendation | Verdict | Question):
        problems += _link_problems(record, context.studies, context.questions)
    if isinstance(record, Recommendation):
        problems += _recommendation_problems(record)
    if isinstance(record, Verdict):
        problems += _grade_problems(record, context.scales, context.unreadable)
    if isinstance(record, Study):
        problems += _absence_problems(record)
    return problems


def _absence_problems(study: Study) -> list[Problem]:
    """Facts said to be unreported or not applicable must be empty; unreported needs a read source."""
    problems = []
    for listing in ("not_reported", "not_applicable"):
        names: tuple[str, ...] = getattr(study, listing)
        what = "not reported in the source" if listing == "not_reported" else "not applicable"
        for name in names:
            if study.recorded_value(name) not in (None, (), []):
                problems.append(
                    Problem(
                        study.path,
                        study.line_of(listing),
                        study.id,
                        listing,
                        f"'{name}' is listed as {what} but has a value",
                        f"remove '{name}' from {listing}, or set it to null",
                    )
                )
    both = sorted(set(study.not_reported) & set(study.not_applicable))
    if both:
        problems.append(
            Problem(
                study.path,
                study.line_of("not_applicable"),
                study.id,
                "not_applicable",
                f"{', '.join(both)} cannot be both not reported and not applicable",
                "keep each name in one list",
            )
        )
    if study.not_reported and study.verification == "as-cited":
        problems.append(
            Problem(
                study.path,
                study.line_of("not_reported"),
                study.id,
                "not_reported",
                "an as-cited study's source was not read, so nothing can be said to be absent from it",
                "remove not_reported, or read the source and set verification",
            )
        )
    for number, arm in enumerate(study.arms):
        navigated = arm.targeting in ("navigated", "image-guided", "robotic")
        if arm.targeting is not None and arm.neuronavigation is not None and navigated != arm.neuronavigation:
            problems.append(
                Problem(
                    study.path,
                    study.line_of(f"arms.{number}.targeting"),
                    study.id,
                    f"arms.{number}.targeting",
                    f"targeting '{arm.targeting}' contradicts "
                    f"neuronavigation: {str(arm.neuronavigation).lower()}",
                    "navigated, image-guided and robotic are navigated; landmark and hotspot are not",
                )
            )
    return problems


def _duplicate_ids(records: list[Record]) -> list[Problem]:
    first: dict[str, Record] = {}
    problems = []
    for record in records:
        if record.id in first:
            other = first[record.id]
            problems.append(
                Problem(
                    record.path,
                    record.line,
                    record.id,
                    "id",
                    f"duplicate record id (also used by {other.path}:{other.line})",
                    "record ids must be unique across kb/",
                )
            )
        else:
            first[record.id] = record
    return problems


def cited_keys(record: Record) -> Iterator[tuple[str, str]]:
    """(field path, BibTeX key) for every key a record cites."""
    if isinstance(record, Study):
        yield "reference", record.reference
        if record.stated_class:
            yield "stated_class.reference", record.stated_class.reference
    elif isinstance(record, Recommendation):
        yield "guideline", record.guideline
    elif isinstance(record, Verdict):
        yield "source_reference", record.source_reference
    elif isinstance(record, Knowledge):
        for i, key in enumerate(record.references):
            yield f"references.{i}", key
        for i, section in enumerate(record.sections):
            for j, src in enumerate(section.sources):
                if src.reference:
                    yield f"sections.{i}.sources.{j}.reference", src.reference
    source = getattr(record, "source", None)
    if source is not None and source.reference:
        yield "source.reference", source.reference


def _key_problems(
    record: Record, references: Mapping[str, Reference], aliases: Mapping[str, str]
) -> list[Problem]:
    problems = []
    for field, key in cited_keys(record):
        if key not in references and aliases.get(key) not in references:
            problems.append(
                Problem(
                    record.path,
                    record.line_of(field),
                    record.id,
                    field,
                    f"'{key}' is not in references.bib",
                    _did_you_mean(key, references, "add the entry with tmskb add"),
                )
            )
    return problems


def _vocab_fields(record: Record) -> Iterator[tuple[str, str, tuple[str, ...]]]:
    """(field path, vocabulary, ids) for every vocabulary-backed field of a record."""
    if isinstance(record, Study):
        yield "condition", "indications", record.condition
        yield "design", "designs", (record.design,)
        for i, arm in enumerate(record.arms):
            for name in ("target", "side", "protocol", "coil"):
                yield f"arms.{i}.{name}", FIELD_VOCABULARY[name], getattr(arm, name)
            if arm.targeting:
                yield f"arms.{i}.targeting", "targeting", (arm.targeting,)
    elif isinstance(record, Recommendation):
        yield "indication", "indications", (record.indication,)
        if record.outcome_domain:
            yield "outcome_domain", "outcomes", (record.outcome_domain,)
        for name in ("target", "side", "protocol", "coil"):
            yield name, FIELD_VOCABULARY[name], getattr(record, name)
    elif isinstance(record, Knowledge):
        yield "indication", "indications", record.indication
    elif isinstance(record, Question):
        yield "condition", "indications", (record.condition,)
        if record.outcome_domain:
            yield "outcome_domain", "outcomes", (record.outcome_domain,)
        for name in ("target", "side", "protocol", "coil"):
            yield f"intervention.{name}", FIELD_VOCABULARY[name], getattr(record.intervention, name)


def _term_problems(record: Record, vocab: Vocabularies) -> list[Problem]:
    problems = []
    for field, vocabulary, values in _vocab_fields(record):
        for value, hint in check_ids(vocab, vocabulary, values):
            reason = f"'{value}' is not a term of the {vocabulary} vocabulary"
            if not value.strip():
                reason, hint = "is empty", _fill_in_hint(vocab, vocabulary)
            problems.append(Problem(record.path, record.line_of(field), record.id, field, reason, hint))
    return problems


def _fill_in_hint(vocab: Vocabularies, vocabulary: str, shown: int = 4) -> str:
    """What to write in an empty vocabulary field: a few of its ids, and where the rest are."""
    terms = list(vocab.terms.get(vocabulary, {}))
    examples = ", ".join(terms[:shown]) + (", ..." if len(terms) > shown else "")
    where = f"kb/vocab/{vocabulary}.yaml"
    return f"fill in a term of {where}, e.g. {examples}" if terms else f"fill in a term of {where}"


def _link_problems(
    record: Recommendation | Verdict | Question, studies: Set[str], questions: Set[str]
) -> list[Problem]:
    """Linked studies and the question must be records of the KB."""
    problems = []
    links = [(f"candidate_studies.{i}", s) for i, s in enumerate(record.candidate_studies)]
    links += [(f"counted_studies.{i}.study", link.study) for i, link in enumerate(record.counted_studies)]
    for path, study_id in links:
        if study_id not in studies:
            problems.append(
                Problem(
                    record.path,
                    record.line_of(path),
                    record.id,
                    path.split(".")[0],
                    f"'{study_id}' is not a study record",
                    _did_you_mean(study_id, studies, "create it with tmskb new study"),
                )
            )
    question = getattr(record, "question", None)
    if question is not None and question not in questions:
        problems.append(
            Problem(
                record.path,
                record.line_of("question"),
                record.id,
                "question",
                f"'{question}' is not a question record",
                _did_you_mean(question, questions, "write it in kb/questions/"),
            )
        )
    return problems


def _grade_problems(verdict: Verdict, scales: Mapping[str, Scale], unreadable: Set[str]) -> list[Problem]:
    """Each grade names a scale of kb/scales/ and one of its values."""
    problems = []
    for i, grade in enumerate(verdict.grades):
        scale = scales.get(grade.scale)
        if scale is None:
            if grade.scale not in unreadable:
                problems.append(
                    Problem(
                        verdict.path,
                        verdict.line_of(f"grades.{i}.scale"),
                        verdict.id,
                        f"grades.{i}.scale",
                        f"'{grade.scale}' is not a scale",
                        _did_you_mean(grade.scale, scales, "define it in kb/scales/"),
                    )
                )
        elif scale.get(grade.value) is None:
            known = ", ".join(v.value for v in scale.values)
            problems.append(
                Problem(
                    verdict.path,
                    verdict.line_of(f"grades.{i}.value"),
                    verdict.id,
                    f"grades.{i}.value",
                    f"'{grade.value}' is not a value of the scale '{scale.id}'",
                    f"expected one of {known}",
                )
            )
    return problems


def _recommendation_problems(rec: Recommendation) -> list[Problem]:
    problems = []
    if rec.level and not rec.direction:
        problems.append(
            Problem(
                rec.path,
                rec.line_of("direction"),
                rec.id,
                "direction",
                "a published level needs a direction",
                "write efficacy or inefficacy",
            )
        )
    if rec.level and rec.level_bound:
        problems.append(
            Problem(
                rec.path,
                rec.line_of("level_bound"),
                rec.id,
                "level_bound",
                "give either a level or a level bound, not both",
                "set level_bound: null when the level is known",
            )
        )
    return problems


def _did_you_mean(value: str, options: Iterable[str], fallback: str) -> str:
    options = list(options)
    lowered = {o.lower(): o for o in options}
    close = difflib.get_close_matches(value.lower(), list(lowered), n=1, cutoff=0.6)
    return f"did you mean '{lowered[close[0]]}'?" if close else fallback
