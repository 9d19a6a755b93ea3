"""`tmskb check`: every planted problem of tests/data/broken is reported at the right place."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexer import pipeline
from indexer.cli import cli
from indexer.settings import Settings

BROKEN = Path(__file__).parent / "data" / "broken"

# (path, line, record, field, start of the reason)
PLANTED = [
    pytest.param(
        "references.bib",
        10,
        "Smith2020",
        "key",
        "key differs only in case from 'smith2020'",
        id="case_duplicate_key",
    ),
    pytest.param(
        "references.bib",
        18,
        "smith2020",
        "key",
        "duplicate key (first defined on line 2)",
        id="duplicate_key",
    ),
    pytest.param(
        "references.bib", 26, "nojournal2019", "journal", "missing required field", id="bib_missing_field"
    ),
    pytest.param(
        "references.bib",
        45,
        "badverif2017",
        "verification",
        "'checked' is not a verification status",
        id="bib_bad_verification",
    ),
    pytest.param("references.bib", 53, "baddoi2016", "doi", "'not-a-doi' is not a DOI", id="bad_doi"),
    pytest.param("references.bib", 57, "", "key", "entry has no citation key", id="no_key"),
    pytest.param(
        "references.bib",
        66,
        "comma2014",
        "author",
        "value runs into the next field 'title'",
        id="missing_comma",
    ),
    pytest.param(
        "references.bib", 76, "macro2013", "journal", "undefined macro 'testjournal'", id="undefined_macro"
    ),
    pytest.param("references.bib", 81, "unclosed2012", "", "malformed BibTeX entry", id="malformed_block"),
    pytest.param(
        "kb/studies/bad-class.yaml",
        27,
        "bad-class",
        "stated_class.class",
        "'IIb' is not a valid class",
        id="invalid_class",
    ),
    pytest.param(
        "kb/recommendations/bad-level.yaml",
        11,
        "bad-level",
        "level",
        "'D' is not a valid level",
        id="invalid_level",
    ),
    pytest.param(
        "kb/recommendations/bad-direction.yaml",
        12,
        "bad-direction",
        "direction",
        "'effective' is not a valid direction",
        id="invalid_direction",
    ),
    pytest.param(
        "kb/recommendations/bad-verification.yaml",
        16,
        "bad-verification",
        "verification",
        "'verified' is not a valid verification",
        id="invalid_verification",
    ),
    pytest.param(
        "kb/recommendations/bad-type.yaml",
        2,
        "bad-type",
        "type",
        "'guideline' is not a record type",
        id="invalid_record_type",
    ),
    pytest.param(
        "kb/studies/unknown-term.yaml",
        4,
        "unknown-term",
        "condition",
        "'neuropathic-pian' is not a term of the indications vocabulary",
        id="unknown_vocabulary_term",
    ),
    pytest.param(
        "kb/studies/arm-target.yaml",
        13,
        "arm-target",
        "arms.0.target",
        "'M1 cortex' is not a term of the targets vocabulary",
        id="unknown_term_in_arm",
    ),
    pytest.param(
        "kb/studies/missing-key.yaml",
        3,
        "missing-key",
        "reference",
        "'smith2020x' is not in references.bib",
        id="unknown_bib_key",
    ),
    pytest.param(
        "kb/studies/wrong-type.yaml",
        10,
        "wrong-type",
        "patients.total",
        "expected a whole number or null, got 'thirty'",
        id="wrong_type",
    ),
    pytest.param(
        "kb/studies/missing-field.yaml",
        1,
        "missing-field",
        "design",
        "missing required field",
        id="record_missing_field",
    ),
    pytest.param(
        "kb/studies/unknown-field.yaml",
        5,
        "unknown-field",
        "desing",
        "unknown field 'desing'",
        id="unknown_field",
    ),
    pytest.param(
        "kb/studies/dup-id.yaml",
        1,
        "dup-id",
        "id",
        "duplicate record id (also used by kb/other/dup-id.yaml:1)",
        id="duplicate_record_id",
    ),
    pytest.param(
        "kb/studies/id-mismatch.yaml",
        1,
        "not-the-file-name",
        "id",
        "id 'not-the-file-name' does not match the file name",
        id="id_file_mismatch",
    ),
    pytest.param(
        "kb/studies/syntax-error.yaml", 4, "syntax-error", "", "YAML syntax error", id="yaml_syntax_error"
    ),
    pytest.param(
        "kb/recommendations/ghost-support.yaml",
        14,
        "ghost-support",
        "candidate_studies",
        "'goood-study' is not a study record",
        id="missing_supporting_study",
    ),
    pytest.param(
        "kb/questions/bad-question.yaml",
        4,
        "bad-question",
        "condition",
        "'neuropathc-pain' is not a term of the indications vocabulary",
        id="question_unknown_condition",
    ),
    pytest.param(
        "kb/verdicts/bad-grade.yaml",
        7,
        "bad-grade",
        "grades.0.value",
        "'moderate' is not a value of the scale 'test-scale'",
        id="verdict_grade_not_in_scale",
    ),
    pytest.param(
        "kb/scales/bad-scale.yaml",
        6,
        "bad-scale",
        "values.0.label",
        "missing required field",
        id="scale_value_without_label",
    ),
]

HINTS = {
    "unknown_vocabulary_term": "did you mean 'neuropathic-pain'?",
    "unknown_term_in_arm": "did you mean 'm1'?",
    "unknown_bib_key": "did you mean 'smith2020'?",
    "unknown_field": "did you mean 'design'?",
    "missing_supporting_study": "did you mean 'good-study'?",
    "question_unknown_condition": "did you mean 'neuropathic-pain'?",
    "verdict_grade_not_in_scale": "expected one of strong, weak",
}


@pytest.fixture(scope="module")
def problems() -> list[str]:
    return [str(p) for p in pipeline.load(Settings.for_root(BROKEN)).problems]


@pytest.mark.parametrize(("path", "line", "record", "field", "reason"), PLANTED)
def test_planted_problem_is_reported(
    problems: list[str], path: str, line: int, record: str, field: str, reason: str
) -> None:
    prefix = ": ".join(part for part in (f"{path}:{line}", record, field) if part)
    matching = [p for p in problems if p.startswith(f"{prefix}: {reason}")]
    assert matching, f"no problem '{prefix}: {reason}...' in:\n" + "\n".join(problems)


@pytest.mark.parametrize(("case", "hint"), HINTS.items())
def test_unknown_names_come_with_did_you_mean(problems: list[str], case: str, hint: str) -> None:
    param = next(p for p in PLANTED if p.id == case)
    path, line = param.values[0], param.values[1]
    assert any(p.startswith(f"{path}:{line}:") and p.endswith(f"({hint})") for p in problems)


def test_nothing_else_is_reported(problems: list[str]) -> None:
    """Every reported problem is a planted one (the good entries and records stay quiet)."""
    prefixes = [f"{p.values[0]}:{p.values[1]}:" for p in PLANTED]
    extra = [p for p in problems if not any(p.startswith(x) for x in prefixes)]
    # A record that misspells 'design' is also missing 'design': two problems, one planted file.
    assert extra == [
        "kb/studies/unknown-field.yaml:1: unknown-field: design: missing required field "
        "(add 'design:'; write null if the source does not say)"
    ]


def test_problems_are_sorted_with_one_based_lines(problems: list[str]) -> None:
    keys = [(p.split(":")[0], int(p.split(":")[1])) for p in problems]
    assert keys == sorted(keys)
    assert min(line for _, line in keys) >= 1


def test_check_cli_reports_and_exits_1(runner) -> None:
    result = runner.invoke(cli, ["check", "--root", str(BROKEN)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == f"{len(PLANTED) + 1} problems in 19 files"
    assert "references.bib:18: smith2020: key: duplicate key (first defined on line 2)" in result.stderr


def test_an_entry_without_verification_is_as_cited() -> None:
    """No `verification` field claims nothing: the weakest status, so an import stays as written."""
    kb = pipeline.load(Settings.for_root(BROKEN))
    assert kb.references["noverif2018"].verification == "as-cited"
    assert not [p for p in kb.problems if p.record == "noverif2018"]


def test_entry_after_a_broken_block_is_kept() -> None:
    kb = pipeline.load(Settings.for_root(BROKEN))
    assert "after2011" in kb.references


def test_check_passes_on_good_fixture(runner) -> None:
    result = runner.invoke(cli, ["check", "--root", str(BROKEN.parent / "kb")])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("OK: 5 references, 4 studies, 3 recommendations")


def _yaml_files() -> list[Path]:
    roots = [BROKEN / "kb", BROKEN.parent / "kb" / "kb", Path(__file__).parent.parent / "kb"]
    return [p for root in roots for p in sorted(root.rglob("*.yaml"))]


@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_fast_and_full_schema_validators_agree(path: Path) -> None:
    """The compiled fast path must accept exactly what jsonschema accepts."""
    import fastjsonschema

    from indexer import schema, yamlio

    try:
        located = yamlio.load(path.read_text())
    except yamlio.YamlError:
        return
    data = located.data
    name = (
        "vocabulary" if path.parent.name == "vocab" else "ruleset" if path.parent.name == "rulesets" else None
    )
    if name is None:
        name = data.get("type") if isinstance(data, dict) else None
    if name not in schema.SCHEMA_NAMES:
        return
    full_ok = not list(schema._validator(name).iter_errors(data))
    try:
        schema._fast(name)(data)
        fast_ok = True
    except fastjsonschema.JsonSchemaException:
        fast_ok = False
    assert fast_ok == full_ok


def test_source_url_must_be_http(tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "kb"
    shutil.copytree(BROKEN.parent / "kb", root)
    study = root / "kb" / "studies" / "alpha2010test.yaml"
    study.write_text(
        study.read_text().replace("url: https://example.org/alpha2010test", "url: javascript:alert(1)")
    )
    problems = [str(p) for p in pipeline.load(Settings.for_root(root)).problems]
    assert problems == [
        "kb/studies/alpha2010test.yaml:28: alpha2010test: source.url: "
        "'javascript:alert(1)' is not an http(s) address (write the full https:// address)"
    ]


def test_not_reported_is_checked_against_the_record(tmp_path: Path) -> None:
    """A fact said to be absent from the source must be empty, and the source must have been read."""
    import shutil

    root = tmp_path / "kb"
    shutil.copytree(BROKEN.parent / "kb", root)
    study = root / "kb" / "studies" / "alpha2010test.yaml"
    text = study.read_text()
    study.write_text(
        text.replace(
            "verification: abstract\n",
            "verification: abstract\nnot_reported: [intensity, pulses_per_session]\n",
        )
    )
    assert pipeline.load(Settings.for_root(root)).problems == []
    study.write_text(
        text.replace(
            "verification: abstract\n", "verification: abstract\nnot_reported: [randomised, sessions]\n"
        )
    )
    problems = [str(p) for p in pipeline.load(Settings.for_root(root)).problems]
    where = "kb/studies/alpha2010test.yaml:30: alpha2010test: not_reported: "
    assert problems == [
        f"{where}'randomised' is listed as not reported in the source but has a value "
        "(remove 'randomised' from not_reported, or set it to null)",
        f"{where}'sessions' is listed as not reported in the source but has a value "
        "(remove 'sessions' from not_reported, or set it to null)",
    ]
    study.write_text(
        text.replace("verification: abstract\n", "verification: as-cited\nnot_reported: [intensity]\n")
    )
    problems = [str(p) for p in pipeline.load(Settings.for_root(root)).problems]
    assert len(problems) == 1 and "as-cited" in problems[0], problems


def test_not_applicable_and_targeting_are_checked(tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "kb"
    shutil.copytree(BROKEN.parent / "kb", root)
    study = root / "kb" / "studies" / "alpha2010test.yaml"
    text = study.read_text()
    study.write_text(
        text.replace("verification: abstract\n", "verification: abstract\nnot_applicable: [sham_type]\n")
    )
    assert pipeline.load(Settings.for_root(root)).problems == []
    study.write_text(
        text.replace(
            "verification: abstract\n", "verification: abstract\nnot_applicable: [sessions]\n"
        ).replace("    neuronavigation: null\n", "    targeting: landmark\n    neuronavigation: true\n")
    )
    problems = [str(p) for p in pipeline.load(Settings.for_root(root)).problems]
    assert any("'sessions' is listed as not applicable but has a value" in p for p in problems), problems
    assert any("targeting 'landmark' contradicts neuronavigation: true" in p for p in problems), problems
