"""The FHIR R5 export (indexer/fhir.py): validated with fhir.resources, and round trips.

Every Bundle here is parsed with the fhir.resources R5 models (the library's default release in
7.x and 8.x), never with a schema written here; the fields we carry are then read back from the
parsed models and compared with the export rows and the stored documents.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import PROJECT, build
from fhir.resources import __fhir_version__
from fhir.resources.bundle import Bundle

from app import create_app
from indexer import export as ex
from indexer import fhir
from indexer.cli import cli
from indexer.fields import CLASS_LABELS, CLASS_VALUES
from indexer.models import Verification
from indexer.search import Query, SearchIndex
from indexer.settings import Settings

EVERYTHING = Query.make("")
NEUROPATHIC = Query.make("", {"indication": ["neuropathic-pain"]})


@pytest.fixture(scope="module")
def bundled_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    settings = Settings.for_root(PROJECT, tmp_path_factory.mktemp("fhir-bundled") / "index")
    build(settings)
    return settings.index_dir


def export_text(index_dir: Path, query: Query, table: str = "records") -> str:
    return b"".join(ex.export_bytes(index_dir, query, "fhir", table)).decode("utf-8")


def parsed(index_dir: Path, query: Query, table: str = "records") -> Any:
    """Our export, parsed and validated by fhir.resources (R5)."""
    return Bundle.model_validate_json(export_text(index_dir, query, table))


def stored(index: SearchIndex, doc_id: str) -> dict[str, Any]:
    doc = index.document(doc_id)
    assert doc is not None, doc_id
    return dict(doc["data"])


# -- reading our fields back from the library's models ----------------------------------------


def ext(element: Any, name: str) -> Any:
    """The value of our extension `name` on a parsed element, or None."""
    for item in element.extension or []:
        if item.url == fhir.extension_url(name):
            for field in ("valueCode", "valueBoolean", "valueCoding", "valueReference", "valueString"):
                value = getattr(item, field)
                if value is not None:
                    return value
    return None


def by_identifier(bundle: Any, kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for e in bundle.entry:
        resource = e.resource
        if resource.get_resource_type() == kind:
            (key,) = [i.value for i in resource.identifier or [] if i.system in fhir_id_systems()]
            assert key not in out, f"{kind} {key} twice"
            out[key] = resource
    return out


def fhir_id_systems() -> set[str]:
    return {fhir.RECORD_SYSTEM, fhir.BIBTEX_SYSTEM}


def scale_of(code_system_url: str) -> str:
    return code_system_url.removeprefix(fhir.system(""))


def certainties(evidence: Any, basis: str) -> list[Any]:
    return [c for c in evidence.certainty or [] if ext(c, "basis") == basis]


def grades_text(evidence: Any) -> list[str]:
    """Each published grade as the exports write it: 'label [scale id]'."""
    out = []
    for c in certainties(evidence, "published"):
        (code,) = c.rating.coding
        out.append(f"{code.display or code.code} [{scale_of(code.system)}]")
    return out


def published_level(evidence: Any) -> tuple[str, str]:
    """(level, bound) from the published grade in the Lefaucheur scale."""
    for c in certainties(evidence, "published"):
        (code,) = c.rating.coding
        if code.system == fhir.system("lefaucheur-level"):
            return ("", code.code) if code.code.startswith("below-") else (code.code, "")
    return "", ""


def computed(evidence: Any) -> dict[str, Any]:
    (c,) = certainties(evidence, "computed")
    level = c.rating.coding[0].code if c.rating else ""
    if c.rating:
        assert c.rating.coding[0].system == fhir.system("lefaucheur-level")
    lower = ext(c, "lower-bound")
    return {
        "computed_level": level,
        "computed_level_status": ext(c, "computed-status"),
        "computed_level_rests_on_lower_bounds": "" if lower is None else lower,
        "level_ruleset": ext(c, "ruleset").code,
    }


def study_class(evidence: Any) -> dict[str, Any]:
    found = certainties(evidence, "stated") + certainties(evidence, "computed")
    if not found:
        return {"class": "", "class_lower_bound": "", "class_basis": "", "class_ruleset": ""}
    (c,) = found
    (code,) = c.rating.coding
    assert code.system == fhir.system(fhir.STUDY_CLASS) and code.display == CLASS_LABELS[code.code]
    ruleset = ext(c, "ruleset")
    lower = ext(c, "lower-bound")
    assert code.code.endswith("+") == (lower is True and code.code != "I")
    return {
        "class": code.code.rstrip("+"),
        "class_lower_bound": lower,
        "class_basis": ext(c, "basis"),
        "class_ruleset": ruleset.code if ruleset else "",
    }


def verification(resource: Any) -> str:
    coding = ext(resource, "verification")
    assert coding.system == fhir.system(fhir.VERIFICATION)
    assert coding.display == Verification(coding.code).label
    return str(coding.code)


# -- validation --------------------------------------------------------------------------------


def test_the_library_models_are_r5() -> None:
    assert __fhir_version__.startswith("5.")


@pytest.mark.parametrize("table", ["records", "evidence"])
def test_bundle_of_the_bundled_kb_validates(bundled_index: Path, table: str) -> None:
    text = export_text(bundled_index, EVERYTHING, table)
    bundle: Any = Bundle.model_validate_json(text)  # raises on any structural or type error
    assert bundle.type == "collection" and bundle.entry
    kinds = Counter(e.resource.get_resource_type() for e in bundle.entry)
    assert set(kinds) == {"CodeSystem", "Citation", "Evidence"}
    urls = [e.fullUrl for e in bundle.entry]
    assert len(urls) == len(set(urls)) and all(u.startswith("urn:uuid:") for u in urls)
    # every literal reference points at an entry of this Bundle
    literal = [m for m in _walk(json.loads(text)) if isinstance(m, dict) and "reference" in m]
    assert literal and {m["reference"] for m in literal} <= set(urls)
    # the same bytes every time (web = CLI, golden files)
    assert export_text(bundled_index, EVERYTHING, table) == text


def test_one_resource_per_reference_verdict_and_study(bundled_index: Path) -> None:
    rows = list(ex.rows(bundled_index, EVERYTHING))
    bundle = parsed(bundled_index, EVERYTHING)
    evidence = by_identifier(bundle, "Evidence")
    expected = {r["id"] for r in rows if r["type"] in ("recommendation", "verdict", "study")}
    assert set(evidence) == expected
    citations = by_identifier(bundle, "Citation")
    keys = {k for r in rows for k in r["references"]}
    assert set(citations) == keys  # the references behind the rows, each once
    assert {r["id"].removeprefix("@") for r in rows if r["type"] == "reference"} <= set(citations)


def test_records_round_trip_keeps_levels_classes_rulesets_and_statuses(bundled_index: Path) -> None:
    bundle = parsed(bundled_index, EVERYTHING)
    evidence = by_identifier(bundle, "Evidence")
    citations = by_identifier(bundle, "Citation")
    index = SearchIndex(bundled_index)
    seen: Counter[str] = Counter()
    for row in ex.rows(bundled_index, EVERYTHING):
        kind = row["type"]
        if kind in ("recommendation", "verdict", "study"):
            got = evidence[row["id"]]
            assert verification(got) == row["verification"], row["id"]
        if kind in ("recommendation", "verdict"):
            assert grades_text(got) == row["grades"], row["id"]
            question = ext(got, "question")
            if row["question"]:
                assert question.identifier.system == fhir.RECORD_SYSTEM
                assert question.identifier.value == row["question"]
            else:
                assert question is None
            direction = ext(got, "direction") or ""
        if kind == "recommendation":
            level, bound = published_level(got)
            assert (level, bound) == (row["published_level"], row["published_level_bound"]), row["id"]
            assert computed(got) == {k: row[k] for k in computed(got)}, row["id"]
            assert {"for": "efficacy", "against": "inefficacy"}.get(direction, "") == row["direction"]
        elif kind == "verdict":
            assert direction == row["direction"], row["id"]
        elif kind == "study":
            assert study_class(got) == {k: row[k] for k in study_class(got)}, row["id"]
            record = stored(index, row["id"])["record"]
            assert ext(got, "result") == (record.get("result") or "not-reported")
            arms = [v for v in got.variableDefinition if v.variableRole.coding[0].code == "exposure"]
            assert [ext(v, "result") for v in arms] == [a.get("result") for a in record["arms"]]
        elif kind == "reference":
            got = citations[row["id"].removeprefix("@")]
            assert verification(got) == row["verification"]
            ids = {i.system: i.value for i in got.citedArtifact.identifier or []}
            assert ids.get(fhir.DOI_SYSTEM, "") == row["doi"] and ids.get(fhir.PMID_SYSTEM, "") == row["pmid"]
            fields = stored(index, row["id"])["fields"]
            titles = [t.text for t in got.citedArtifact.title or []]
            assert titles == ([fields["title"]] if fields.get("title") else [])
            form = got.citedArtifact.publicationForm[0]
            assert (form.articleDate or form.publicationDateText or "") == row["year"]
        seen[kind] += 1
    assert seen["recommendation"] and seen["verdict"] and seen["study"] and seen["reference"]


def test_evidence_round_trip_keeps_each_verdict_and_its_studies(bundled_index: Path) -> None:
    bundle = parsed(bundled_index, NEUROPATHIC, "evidence")
    evidence = by_identifier(bundle, "Evidence")
    rows = list(ex.rows(bundled_index, NEUROPATHIC, "evidence"))
    assert rows
    for row in rows:
        got = evidence[row["id"]]
        assert grades_text(got) == row["grades"], row["id"]
        assert "".join(published_level(got)) == row["published_level"]
        assert (ext(got, "direction") or "") == row["direction"]
        assert verification(got) == row["verification"]
        if row["type"] == "recommendation":
            back = computed(got)
            level = back["computed_level"] if back["computed_level_status"] == "computed" else ""
            assert level == row["computed_level"]
            assert back["computed_level_rests_on_lower_bounds"] == row["computed_level_rests_on_lower_bounds"]
            assert back["level_ruleset"] == row["level_ruleset"]
        links = [a for a in got.relatedArtifact or [] if a.type == "depends-on"]
        groups = Counter(ext(a, "study-direction") for a in links)
        for group in ("supporting", "opposing", "inconclusive", "not-reported", "not-counted"):
            assert groups[group] == row[f"studies_{group.replace('-', '_')}"], (row["id"], group)
        assert [a.label for a in links if ext(a, "study-link") == "counted"] == row["counted_studies"]
        assert [a.label for a in links if ext(a, "study-link") != "counted"] == row["candidate_studies"]
        by_class = Counter(
            a.classifier[0].coding[0].code if a.classifier else "?"
            for a in links
            if ext(a, "study-direction") == "supporting"
        )
        assert [f"{n} x Class {ex.class_words(c)}" for c, n in sorted(by_class.items())] == row[
            "supporting_by_class"
        ]
        for link in links:  # the evidence view carries each linked study with its assessments
            study = evidence[link.resourceReference.identifier.value]
            assert study_class(study)["class"] == (
                link.classifier[0].coding[0].code.rstrip("+") if link.classifier else ""
            )


def test_grading_scales_classes_statuses_and_rulesets_are_code_systems(bundled_index: Path) -> None:
    bundle = parsed(bundled_index, Query.make("Obadia"))
    systems = {
        e.resource.url: e.resource for e in bundle.entry if e.resource.get_resource_type() == "CodeSystem"
    }
    concepts = {url: {c.code: c for c in cs.concept} for url, cs in systems.items()}
    index = SearchIndex(bundled_index)
    scales = list(index.iter_hits(Query.make("", {"type": ["scale"]})))
    assert {h.id for h in scales} >= {"lefaucheur-level", "grade-certainty"}
    for hit in scales:
        record = hit.data["record"]
        cs = systems[fhir.system(hit.id)]
        assert cs.title == record["name"] and verification(cs) == record["verification"]
        assert ext(cs, "measures").code == record["measures"]
        values = [(c.code, c.display) for c in cs.concept][: len(record["values"])]
        assert values == [(v["value"], v["label"]) for v in record["values"]]  # own order, own words
    assert {"A", "B", "C", "below-A", "below-B", "below-C"} <= set(concepts[fhir.system("lefaucheur-level")])
    assert list(concepts[fhir.system(fhir.STUDY_CLASS)]) == list(CLASS_VALUES)
    assert list(concepts[fhir.system(fhir.VERIFICATION)]) == [v.value for v in Verification]
    rules = concepts[fhir.system(fhir.RULESET)]
    for ruleset in index.rulesets():
        assert rules[ruleset["id"]].display == ruleset["name"]
        assert rules[ruleset["id"]].property[0].valueCode == ruleset["verification"]
    # every code of ours anywhere in the Bundle is a concept of an included CodeSystem, same words
    for resource in (e.resource for e in bundle.entry):
        for item in _walk(resource.model_dump(mode="json", exclude_none=True)):
            if isinstance(item, dict) and str(item.get("system", "")).startswith(fhir.system("")):
                concept = concepts[item["system"]][item["code"]]
                assert item.get("display") in (None, concept.display), item


def test_a_stated_class_keeps_its_basis(tmp_path: Path) -> None:
    root = tmp_path / "kb"
    root.mkdir()
    shutil.copy(PROJECT / "references.bib", root / "references.bib")
    shutil.copytree(PROJECT / "kb", root / "kb")
    study = root / "kb" / "studies" / "hosomi2013pain.yaml"
    source = study.read_text("utf-8")
    stated = "stated_class: {class: II, reference: lefaucheur2014guidelines, location: Table 2}"
    study.write_text(source.replace("stated_class: null", stated, 1), "utf-8")
    settings = Settings.for_root(root, root / "index")
    build(settings)
    query = Query.make("", {"type": ["study"]})
    bundle = parsed(settings.index_dir, query)
    got = study_class(by_identifier(bundle, "Evidence")["hosomi2013pain"])
    assert got == {"class": "II", "class_lower_bound": False, "class_basis": "stated", "class_ruleset": ""}
    row = next(r for r in ex.rows(settings.index_dir, query) if r["id"] == "hosomi2013pain")
    assert got == {k: row[k] for k in got}


# -- the writer -------------------------------------------------------------------------------


def test_writer_streams_and_checks_every_resource() -> None:
    consumed = 0

    def many() -> Iterator[dict[str, Any]]:
        nonlocal consumed
        for n in range(10_000):
            consumed += 1
            yield fhir.entry("Citation", f"key{n}", {"status": "active", "title": f"Reference {n}"})

    chunks = fhir.write_bundle(fhir.bundle_head(), many())
    assert '"key0"' in next(chunks) and consumed == 1
    bad = fhir.entry("Evidence", "x", {"status": "active"})  # variableDefinition is required
    with pytest.raises(ex.ExportError, match=r"Evidence/x is not valid R5"):
        list(fhir.write_bundle(fhir.bundle_head(), iter([bad])))


def test_ids_are_fhir_ids_and_stable() -> None:
    assert fhir.resource_id("Citation", "smith2020") == "smith2020"
    odd = fhir.resource_id("Citation", "smith_2020:x")
    assert odd != "smith_2020:x" and odd == fhir.resource_id("Citation", "smith_2020:x")
    assert len(fhir.resource_id("Evidence", "x" * 65)) == 36
    assert fhir.full_url("Citation", "a") != fhir.full_url("Evidence", "a")


def test_without_the_library_the_format_names_the_extra(
    bundled_index: Path, runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "fhir.resources", None)  # import fails as if not installed
    with pytest.raises(
        ex.ExportError, match=r"fhir needs fhir\.resources: pip install 'tms-evidence-kb\[export\]'"
    ):
        ex.export(bundled_index, EVERYTHING, "fhir")
    result = runner.invoke(cli, ["export", "--format", "fhir", "--index-dir", str(bundled_index)])
    assert result.exit_code == 1 and "tms-evidence-kb[export]" in result.output and result.stdout == ""
    client = create_app({"INDEX_DIR": str(bundled_index), "TESTING": True}).test_client()
    response = client.get("/search.fhir.json", headers={"Accept": "application/json"})
    assert response.status_code == 400 and "tms-evidence-kb[export]" in response.get_json()["error"]


@pytest.mark.parametrize(("page", "table"), [("search", "records"), ("evidence", "evidence")])
def test_web_routes(bundled_index: Path, page: str, table: str) -> None:
    client = create_app({"INDEX_DIR": str(bundled_index), "TESTING": True}).test_client()
    response = client.get(f"/{page}.fhir.json?indication=neuropathic-pain")
    assert response.status_code == 200
    assert response.mimetype == "application/fhir+json"
    assert response.headers["Content-Disposition"] == f'attachment; filename="tmskb-{page}.fhir.json"'
    assert response.get_data(as_text=True) == export_text(bundled_index, NEUROPATHIC, table)
    Bundle.model_validate_json(response.data)


def _walk(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, dict):
        for v in value.values():
            yield from _walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v)
