"""FHIR R5 export: the records of a view as one Bundle (type collection); docs/export.md "FHIR".

Pure: resources are built as dicts from the stored document data the other exports read
(SearchIndex.iter_hits and SearchIndex.document, handed in by export.py). A reference becomes a
Citation; a recommendation, a verdict and a study each become an Evidence whose `certainty`
entries hold every grade in its own scale (published, stated or computed; never converted); the
grading scales, the study classes, the verification statuses and the rule sets are CodeSystems.
`write_bundle` streams the Bundle as JSON, one entry per line, after checking each resource with
fhir.resources (the optional extra: pip install 'tms-evidence-kb[export]').
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from .errors import ExportError
from .fields import CLASS_LABELS, CLASS_VALUES, REFERENCE_PREFIX
from .models import LEVEL_BOUNDS, VERIFICATION_VALUES, Verification, direction_group
from .questions import LEFAUCHEUR_SCALE

# This KB has no registered canonical home: the URLs below are identifiers, not addresses
# (.example is reserved for that, RFC 2606). A site that publishes the CodeSystems changes BASE.
BASE = "https://tmskb.example/fhir"
RECORD_SYSTEM = f"{BASE}/record"  # Identifier.system of every Evidence: the record id
BIBTEX_SYSTEM = f"{BASE}/bibtex-key"  # Identifier.system of every Citation: the BibTeX key
DOI_SYSTEM = "https://doi.org"
PMID_SYSTEM = "https://pubmed.ncbi.nlm.nih.gov"
PMCID_SYSTEM = "https://www.ncbi.nlm.nih.gov/pmc"
VARIABLE_ROLE = "http://terminology.hl7.org/CodeSystem/variable-role"
STUDY_CLASS, VERIFICATION, RULESET, MEASURE = (
    "tmskb-study-class",
    "tmskb-verification",
    "tmskb-ruleset",
    "tmskb-grade-measure",
)
MEASURES = {  # what a grade measures (scale.schema.json `measures`, and the study class)
    "level-of-evidence": "Level of evidence",
    "certainty-of-evidence": "Certainty of evidence",
    "strength-of-recommendation": "Strength of recommendation",
    "line-of-therapy": "Line of therapy",
    "rating": "Rating",
    "study-class": "Study class",
}
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, BASE)
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")

Doc = Mapping[str, Any]  # a stored document: id, type, title, summary, ... and data
Lookup = Callable[[str], Doc | None]  # SearchIndex.document
Label = Callable[[str, str], str]  # Vocabularies.label(vocabulary, term id)


def system(codesystem: str) -> str:
    """The canonical URL of one of our CodeSystems (a scale id or one of the tmskb-* ids)."""
    return f"{BASE}/CodeSystem/{codesystem}"


def extension_url(name: str) -> str:
    return f"{BASE}/StructureDefinition/{name}"


def full_url(kind: str, key: str) -> str:
    """The entry's fullUrl: a UUID derived from type and key, so every export is the same."""
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, f'{kind}/{key}')}"


def resource_id(kind: str, key: str) -> str:
    """The key itself when it is a valid FHIR id, else the UUID of its fullUrl."""
    return key if _ID.fullmatch(key) else str(uuid.uuid5(_NAMESPACE, f"{kind}/{key}"))


def ext(name: str, value_type: str, value: Any) -> dict[str, Any] | None:
    return None if value in (None, "") else {"url": extension_url(name), f"value{value_type}": value}


def coding(codesystem: str, code: str, display: str | None = None) -> dict[str, Any]:
    return {"system": system(codesystem), "code": code, "display": display}


def verification_ext(status: str | None) -> dict[str, Any] | None:
    if not status:
        return None
    label = Verification(status).label if status in VERIFICATION_VALUES else status
    return ext("verification", "Coding", coding(VERIFICATION, status, label))


def class_code(grade: Mapping[str, Any]) -> str:
    """'III', or 'III+' for a computed lower bound (the study is Class III or better)."""
    lower = grade.get("basis") == "computed" and grade.get("certain") is False
    return f"{grade['cls']}+" if lower and grade["cls"] != "I" else str(grade["cls"])


def clean(value: Any) -> Any:
    """FHIR JSON has no nulls, empty strings, arrays or objects; strings are trimmed."""
    if isinstance(value, dict):
        out = {k: clean(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, "", [], {})}
    if isinstance(value, list | tuple):
        items = [clean(v) for v in value]
        return [v for v in items if v not in (None, "", [], {})]
    return value.strip() if isinstance(value, str) else value


def entry(kind: str, key: str, resource: dict[str, Any]) -> dict[str, Any]:
    body = {"resourceType": kind, "id": resource_id(kind, key), **resource}
    return {"fullUrl": full_url(kind, key), "resource": clean(body)}


# ---------------------------------------------------------------------------------------------
# CodeSystems


def _codesystem(key: str, title: str, concepts: list[dict[str, Any]], **more: Any) -> dict[str, Any]:
    name = "".join(p.capitalize() for p in re.split(r"[^A-Za-z0-9]+", key) if p)
    body = {"url": system(key), "name": name if name[:1].isalpha() else f"Scale{name}", "title": title}
    return entry(
        "CodeSystem",
        key,
        {
            **body,
            "status": "active",
            "caseSensitive": True,
            "content": "complete",
            **more,
            "concept": concepts,
        },
    )


def scale_codesystem(doc: Doc) -> dict[str, Any]:
    """A grading scale (kb/scales) with its values, in its own order and words."""
    record = (doc.get("data") or {}).get("record") or {}
    source = (doc.get("data") or {}).get("source") or {}
    concepts = [
        {"code": v["value"], "display": v.get("label"), "definition": v.get("meaning")}
        for v in record.get("values") or []
    ]
    if record.get("id") == LEFAUCHEUR_SCALE:  # a recommendation may publish only a bound
        concepts += [
            {"code": b, "display": f"Below Level {b[-1]} (exact level not verified)"} for b in LEVEL_BOUNDS
        ]
    measures = record.get("measures") or ""
    where = (record.get("source") or {}).get("location")
    return _codesystem(
        record.get("id") or doc["id"],
        record.get("name") or doc.get("title") or doc["id"],
        concepts,
        extension=[
            verification_ext(record.get("verification")),
            ext("measures", "Coding", coding(MEASURE, measures, MEASURES.get(measures))),
        ],
        identifier=[{"system": RECORD_SYSTEM, "value": doc["id"]}],
        description=record.get("notes"),
        relatedArtifact=[
            {
                "type": "derived-from",
                "label": where,
                "display": source.get("short"),
                "resourceReference": _logical(
                    "Citation", BIBTEX_SYSTEM, source.get("key"), source.get("short")
                ),
            }
            if source.get("key")
            else None
        ],
    )


def fixed_codesystems(rulesets: Iterable[Mapping[str, Any]], measures: Iterable[str]) -> list[dict[str, Any]]:
    """The study classes, the verification statuses, the rule sets and what grades measure."""
    classes = [
        {
            "code": c,
            "display": CLASS_LABELS[c],
            "definition": (
                f"Computed lower bound: Class {c[:-1]} or better under the rule set that computed it"
                if c.endswith("+")
                else None
            ),
        }
        for c in CLASS_VALUES
    ]
    statuses = [{"code": v.value, "display": v.label, "definition": v.description} for v in Verification]
    rules = [
        {
            "code": r["id"],
            "display": r.get("name"),
            "definition": r.get("description"),
            "property": [{"code": "verification", "valueCode": r.get("verification")}],
        }
        for r in rulesets
    ]
    kinds = dict(MEASURES) | {m: m for m in measures if m and m not in MEASURES}
    return [
        _codesystem(STUDY_CLASS, "Study classes (I-IV; '+' marks a computed lower bound)", classes),
        _codesystem(VERIFICATION, "How a record was verified against its source", statuses),
        _codesystem(
            RULESET,
            "Grading rule sets (kb/rulesets)",
            rules,
            property=[{"code": "verification", "type": "code", "description": "How the rules were verified"}],
        ),
        _codesystem(MEASURE, "What a grade measures", [{"code": k, "display": v} for k, v in kinds.items()]),
    ]


# ---------------------------------------------------------------------------------------------
# References


def _logical(kind: str | None, id_system: str, key: str | None, display: str | None) -> dict[str, Any] | None:
    """A reference by identifier (the resource may not be in the Bundle; a question never is)."""
    if not key:
        return None
    return {"type": kind, "identifier": {"system": id_system, "value": key}, "display": display}


def citation(data: Mapping[str, Any]) -> dict[str, Any]:
    """A reference (references.bib) as a Citation of its cited artifact."""
    fields: dict[str, str] = data.get("fields") or {}
    key = str(data.get("key") or "")
    identifiers = [
        {"system": s, "value": fields[name]}
        for name, s in (("doi", DOI_SYSTEM), ("pmid", PMID_SYSTEM), ("pmcid", PMCID_SYSTEM))
        if fields.get(name)
    ]
    pages = fields.get("pages", "").replace("--", "–")
    first, _, last = pages.partition("–")
    year = fields.get("year", "")
    form = {
        "publishedIn": {
            "title": fields.get("journal") or fields.get("booktitle") or fields.get("howpublished"),
            "publisher": {"display": fields.get("publisher")},
        },
        "volume": fields.get("volume"),
        "issue": fields.get("number"),
        "articleDate": year if re.fullmatch(r"\d{4}", year) else None,
        "publicationDateText": None if re.fullmatch(r"\d{4}", year) else year,
        "pageString": pages,
        "firstPage": first,
        "lastPage": last,
    }
    authors = data.get("authors") or []
    named = [a for a in authors if not (a["last"].lower() == "others" and not a["first"])]
    artifact = {
        "identifier": identifiers,
        "title": [{"text": fields.get("title")}],
        "publicationForm": [form],
        "webLocation": [{"url": fields.get("url")}],
        "classification": [
            {"type": {"text": "BibTeX entry type"}, "classifier": [{"text": data.get("entry_type")}]}
        ],
        "contributorship": {
            "complete": len(named) == len(authors) if authors else None,
            "entry": [
                {"contributor": {"display": _name(a)}, "rankingOrder": n} for n, a in enumerate(named, 1)
            ],
        },
        "note": [
            {"text": fields.get("note")},
            {"text": f"Not recorded: {fields['missing']}"} if fields.get("missing") else None,
        ],
    }
    where = f"{data.get('path', '')}:{data.get('line', '')}".strip(":")
    return entry(
        "Citation",
        key,
        {
            "extension": [verification_ext(data.get("verification") or fields.get("verification"))],
            "identifier": [{"system": BIBTEX_SYSTEM, "value": key}],
            "title": data.get("short"),
            "status": "active",
            "note": [{"text": f"Read from {where}"}] if where else None,
            "citedArtifact": artifact,
        },
    )


def _name(author: Mapping[str, str]) -> str:
    last = f"{author.get('von', '')} {author['last']}".strip()
    name = f"{last}, {author['first']}" if author.get("first") else last
    return f"{name}, {author['jr']}" if author.get("jr") else name


# ---------------------------------------------------------------------------------------------
# Evidence: studies, recommendations and verdicts


def _role(code: str) -> dict[str, Any]:
    display = {"measuredVariable": "measured variable"}.get(code, code)
    return {"coding": [{"system": VARIABLE_ROLE, "code": code, "display": display}]}


def _variable(role: str, description: str | None, **more: Any) -> dict[str, Any] | None:
    return {"description": description, "variableRole": _role(role), **more} if description else None


def _joined(*parts: Iterable[str], sep: str = "; ") -> str:
    return sep.join(p for part in parts for p in part if p)


class Builder:
    """The entries of one Bundle: every Citation and Evidence once, each Citation before the
    first resource that cites it (so that resource refers to it by its fullUrl)."""

    def __init__(
        self,
        lookup: Lookup,
        label: Label,
        scales: Iterable[Doc] = (),
        rulesets: Iterable[Mapping[str, Any]] = (),
    ) -> None:
        self.lookup, self.label = lookup, label
        self.scales = list(scales)
        self.rulesets = list(rulesets)
        self.ruleset_names = {r["id"]: r.get("name") for r in self.rulesets}
        self.scale_labels: dict[str, dict[str, str]] = {
            str(s["id"]): {
                v["value"]: v.get("label") or v["value"]
                for v in ((s.get("data") or {}).get("record") or {}).get("values") or []
            }
            for s in self.scales
        }
        self.seen: set[str] = set()

    def codesystems(self) -> Iterator[dict[str, Any]]:
        """Every scale of the KB and the fixed code systems (study classes, verification, ...)."""
        measures = [((s.get("data") or {}).get("record") or {}).get("measures") or "" for s in self.scales]
        for made in [scale_codesystem(s) for s in self.scales] + fixed_codesystems(self.rulesets, measures):
            if self._first(made):
                yield made

    def entries(self, doc: Doc, *, with_studies: bool = False) -> Iterator[dict[str, Any]]:
        """The resources for one hit. Questions, knowledge pages and scales have none of their
        own (a knowledge page brings its references; scales are the CodeSystems)."""
        kind, data = doc.get("type"), doc.get("data") or {}
        if kind == "reference":
            yield from self._cite(str(data.get("key") or ""))
        elif kind == "study":
            yield from self._study(doc)
        elif kind in ("recommendation", "verdict"):
            if with_studies:
                for linked in data.get("studies") or []:
                    study = self.lookup(linked["id"])
                    if study is not None and study.get("type") == "study":
                        yield from self._study(study)
            yield from self._verdict(doc)
        elif kind == "knowledge":
            for key in (data.get("record") or {}).get("references") or []:
                yield from self._cite(key)

    # -- helpers ---------------------------------------------------------------------------

    def _first(self, made: dict[str, Any]) -> bool:
        if made["fullUrl"] in self.seen:
            return False
        self.seen.add(made["fullUrl"])
        return True

    def _cite(self, key: str | None) -> Iterator[dict[str, Any]]:
        if not key or full_url("Citation", key) in self.seen:
            return
        doc = self.lookup(REFERENCE_PREFIX + key)
        if doc is not None and doc.get("data") and self._first(made := citation(doc["data"])):
            yield made

    def _ref(self, kind: str, key: str | None, display: str | None) -> dict[str, Any] | None:
        """A reference by fullUrl when the resource is in the Bundle already, else by identifier."""
        id_system = BIBTEX_SYSTEM if kind == "Citation" else RECORD_SYSTEM
        found = _logical(kind, id_system, key, display)
        if found and key and full_url(kind, key) in self.seen:
            found = {"reference": full_url(kind, key), **found}
        return found

    def _ruleset(self, ruleset: str | None) -> dict[str, Any] | None:
        if not ruleset:
            return None
        return ext("ruleset", "Coding", coding(RULESET, ruleset, self.ruleset_names.get(ruleset)))

    def _source(self, key: str | None, short: str | None, where: str | None, url: str | None) -> list[Any]:
        return [
            {
                "type": "derived-from",
                "label": where,
                "display": short,
                "resourceReference": self._ref("Citation", key, short),
            }
            if key
            else None,
            {"type": "documentation", "display": f"Read at {url}", "document": {"url": url}} if url else None,
        ]

    def class_certainty(self, grade: Mapping[str, Any]) -> dict[str, Any]:
        code = class_code(grade)
        computed = grade.get("basis") == "computed"
        return {
            "extension": [
                ext("basis", "Code", grade.get("basis")),
                ext("lower-bound", "Boolean", computed and grade.get("certain") is False),
                self._ruleset(grade.get("ruleset")),
            ],
            "type": {"coding": [coding(MEASURE, "study-class", MEASURES["study-class"])]},
            "rating": {
                "coding": [coding(STUDY_CLASS, code, CLASS_LABELS.get(code))],
                "text": CLASS_LABELS.get(code),
            },
            "description": grade.get("reason"),
            "rater": f"rule set {grade.get('ruleset')}" if computed and grade.get("ruleset") else None,
        }

    # -- studies ---------------------------------------------------------------------------

    def _study(self, doc: Doc) -> Iterator[dict[str, Any]]:
        if full_url("Evidence", str(doc["id"])) in self.seen:  # linked to an earlier verdict too
            return
        data = doc.get("data") or {}
        record, cited = data.get("record") or {}, data.get("reference") or {}
        key = cited.get("key") or record.get("reference")
        yield from self._cite(key)
        labels = data.get("labels") or {}
        conditions = _joined([c["label"] for c in labels.get("condition") or []]) or _joined(
            record.get("condition") or []
        )
        arms = [
            _variable(
                "exposure",
                _arm_text(arm),
                extension=[ext("result", "Code", arm.get("result"))],
            )
            for arm in data.get("arms") or []
        ]
        grade = data.get("class") or {}
        source = record.get("source") or {}
        made = entry(
            "Evidence",
            str(doc["id"]),
            {
                "extension": [
                    verification_ext(record.get("verification") or doc.get("verification")),
                    ext("result", "Code", record.get("result") or "not-reported"),
                    ext("result-direction", "Code", direction_group(record.get("result"))),
                ],
                "identifier": [{"system": RECORD_SYSTEM, "value": doc["id"]}],
                "title": doc.get("title"),
                "status": "active",
                "description": doc.get("summary") or record.get("summary"),
                "note": [{"text": record.get("notes")}],
                "relatedArtifact": self._source(
                    key, cited.get("short"), source.get("location"), source.get("url")
                ),
                "variableDefinition": [
                    _variable("population", conditions or "Condition not recorded"),
                    *arms,
                    _variable("measuredVariable", record.get("outcome_measure")),
                ],
                "studyDesign": [{"text": labels.get("design") or record.get("design")}],
                "certainty": [self.class_certainty(grade)] if grade.get("cls") else [],
            },
        )
        if self._first(made):
            yield made

    # -- verdicts --------------------------------------------------------------------------

    def _verdict(self, doc: Doc) -> Iterator[dict[str, Any]]:
        data = doc.get("data") or {}
        record, view = data.get("record") or {}, data.get("verdict") or {}
        source = view.get("source") or {}
        yield from self._cite(source.get("key"))
        question = data.get("question") or {}
        made = entry(
            "Evidence",
            str(doc["id"]),
            {
                "extension": [
                    verification_ext(record.get("verification") or view.get("verification")),
                    ext("source-kind", "Code", view.get("kind")),
                    ext("direction", "Code", view.get("direction")),
                    ext(
                        "question",
                        "Reference",
                        _logical(None, RECORD_SYSTEM, question.get("id"), question.get("title")),
                    ),
                ],
                "identifier": [{"system": RECORD_SYSTEM, "value": doc["id"]}],
                "title": doc.get("title"),
                "status": "active",
                "assertion": view.get("statement") or doc.get("summary"),
                "note": [
                    {"text": record.get("notes")},
                    {"text": f"Literature search cut-off: {view['search_cutoff']}"}
                    if view.get("search_cutoff")
                    else None,
                    {"text": f"Inclusion: {view['inclusion']}"} if view.get("inclusion") else None,
                ],
                "relatedArtifact": [
                    *self._source(
                        source.get("key"), source.get("short"), view.get("location"), view.get("url")
                    ),
                    *(self._linked_study(s) for s in data.get("studies") or []),
                ],
                "variableDefinition": self._verdict_variables(doc, record, data),
                "statistic": [_statistic(view["effect"])] if view.get("effect") else [],
                "certainty": [
                    *(self._grade(g, source.get("short")) for g in view.get("grades") or []),
                    self._computed(data["computed"]) if data.get("computed") else None,
                ],
            },
        )
        if self._first(made):
            yield made

    def _verdict_variables(self, doc: Doc, record: Mapping[str, Any], data: Mapping[str, Any]) -> list[Any]:
        labels = data.get("labels") or {}
        fields = {
            name: str(doc.get(name) or "").split() for name in ("indication", "protocol", "target", "side")
        }
        if doc.get("type") == "recommendation":
            population = labels.get("indication") or self.label("indications", record.get("indication") or "")
            exposure = _joined(
                *([i["label"] for i in labels.get(n) or []] for n in ("protocol", "target", "side", "coil"))
            )
            outcome = labels.get("outcome_domain")
        else:
            population = _joined([self.label("indications", i) for i in fields["indication"]])
            exposure = _joined(
                *(
                    [self.label(vocab, i) for i in fields[name]]
                    for name, vocab in (("protocol", "protocols"), ("target", "targets"), ("side", "sides"))
                )
            )
            outcome = ((data.get("verdict") or {}).get("effect") or {}).get("outcome")
        stated = str(record.get("population") or "")
        if stated and stated.lower() != population.lower():
            population = f"{population}: {stated}" if population else stated
        return [
            _variable("population", population or "Condition not recorded"),
            _variable("exposure", exposure),
            _variable("measuredVariable", outcome),
        ]

    def _grade(self, grade: Mapping[str, Any], rater: str | None) -> dict[str, Any]:
        """One grade exactly as the source gave it, in the source's own scale."""
        measures = grade.get("measures") or ""
        return {
            "extension": [ext("basis", "Code", "published")],
            "type": {
                "coding": [coding(MEASURE, measures, MEASURES.get(measures))] if measures else [],
                "text": grade.get("scale_name"),
            },
            "rating": {
                "coding": [coding(grade["scale"], grade["value"], grade.get("label"))],
                "text": grade.get("label"),
            },
            "description": grade.get("meaning"),
            "rater": rater,
        }

    def _computed(self, computed: Mapping[str, Any]) -> dict[str, Any]:
        """The level computed from the linked studies, with its rule set and lower-bound mark."""
        level = computed.get("level")
        label = self.scale_labels.get(LEFAUCHEUR_SCALE, {}).get(level or "", level)
        return {
            "extension": [
                ext("basis", "Code", "computed"),
                ext("computed-status", "Code", computed.get("status")),
                ext("lower-bound", "Boolean", computed.get("certain") is False) if level else None,
                self._ruleset(computed.get("ruleset")),
            ],
            "type": {
                "coding": [coding(MEASURE, "level-of-evidence", MEASURES["level-of-evidence"])],
                "text": "Level computed from the linked studies",
            },
            "rating": {"coding": [coding(LEFAUCHEUR_SCALE, level, label)], "text": label} if level else None,
            "description": computed.get("reason"),
            "rater": f"rule set {computed.get('ruleset')}" if computed.get("ruleset") else None,
        }

    def _linked_study(self, study: Mapping[str, Any]) -> dict[str, Any]:
        grade = study.get("class") or {}
        code = class_code(grade) if grade.get("cls") else ""
        return {
            "extension": [
                ext("study-link", "Code", study.get("link")),
                ext("study-direction", "Code", study.get("group")),
            ],
            "type": "depends-on",
            "label": study.get("id"),
            "display": study.get("short"),
            "classifier": [{"coding": [coding(STUDY_CLASS, code, CLASS_LABELS.get(code))]}] if code else [],
            "resourceReference": self._ref("Evidence", study.get("id"), study.get("short")),
        }


def _arm_text(arm: Mapping[str, Any]) -> str:
    what = _joined(
        *([i["label"] for i in arm.get(f"{n}_labels") or []] for n in ("protocol", "target", "side", "coil"))
    )
    if arm.get("label"):
        return f"{arm['label']}: {what}" if what else str(arm["label"])
    return what or "Arm (intervention not recorded)"


def _statistic(effect: Mapping[str, Any]) -> dict[str, Any]:
    """A pooled effect (a meta-analysis verdict) as read: measure, value, interval, sizes."""
    level = effect.get("ci_level")
    interval = {"low": {"value": effect.get("ci_low")}, "high": {"value": effect.get("ci_high")}}
    return {
        "description": _joined([effect.get("outcome") or "", effect.get("timepoint") or ""], sep=", "),
        "note": [{"text": effect.get("note")}],
        "statisticType": {"text": effect.get("measure")},
        "quantity": {"value": effect.get("value")},
        "sampleSize": {
            "numberOfStudies": effect.get("studies"),
            "numberOfParticipants": effect.get("participants"),
        },
        "attributeEstimate": [
            {"type": {"text": f"{level}% confidence interval"}, "level": level / 100, "range": interval}
            if isinstance(level, int | float) and effect.get("ci_low") is not None
            else None
        ],
    }


# ---------------------------------------------------------------------------------------------
# The Bundle


def bundle_head(edition: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The Bundle without its entries, tagged with the KB's release version, date and content
    hash (kbversion; stable for one KB, so the same KB and view always give the same bytes: the
    golden files and the web's ETag rely on that). No timestamp."""
    head: dict[str, Any] = {"resourceType": "Bundle", "type": "collection"}
    tags = [
        {"system": f"urn:tmskb:kb-{name.replace('_', '-')}", "code": str(value)}
        for name, value in (edition or {}).items()
        if name in ("version", "date", "content_hash") and value
    ]
    if tags:
        head["meta"] = {"tag": tags}
    return head


def write_bundle(head: Mapping[str, Any], entries: Iterable[dict[str, Any]]) -> Iterator[str]:
    """The Bundle as JSON text, one entry per line; each resource is checked with fhir.resources
    first (a resource that does not validate is a bug here: ExportError)."""
    _validate(dict(head))
    text = json.dumps(head, ensure_ascii=False)
    count = 0
    for count, item in enumerate(entries, start=1):
        _validate(item["resource"])
        yield (text[:-1] + ', "entry": [\n' if count == 1 else ",\n") + json.dumps(item, ensure_ascii=False)
    yield "\n]}\n" if count else text + "\n"


def _validate(resource: dict[str, Any]) -> None:
    from fhir.resources import get_fhir_model_class  # the optional extra, checked by export.check
    from pydantic import ValidationError

    kind = resource.get("resourceType", "")
    try:
        get_fhir_model_class(kind).model_validate(resource)
    except (ValidationError, KeyError, ValueError) as exc:
        raise ExportError(f"FHIR {kind}/{resource.get('id', '')} is not valid R5 (a bug): {exc}") from None
