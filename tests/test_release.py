"""Releases and change history (issue 16 items 3, 4): `tmskb release` writes a dated, versioned
data package that validates with frictionless; on two commits its changelog names the record
whose level changed; `tmskb changes` feeds the web's "What changed" page, its Atom feed (parsed
back with feedparser) and the question page's "unchanged since / changed on" lines."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import feedparser
import frictionless
import pytest
from conftest import DATA, PROJECT
from fhir.resources.bundle import Bundle

from indexer.web import create_app

TMSKB = str(Path(sys.executable).with_name("tmskb"))
GIT = ["git", "-c", "user.name=Curator", "-c", "user.email=curator@example.org"]


def git(root: Path, *args: str) -> str:
    return subprocess.run([*GIT, *args], cwd=root, check=True, capture_output=True, text=True).stdout


def tmskb(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [TMSKB, *args, "--root", str(root), "--index-dir", str(root / "index")]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def two_commits(source: Path, where: Path, record: str, old: str, new: str) -> Path:
    """A git repository of a KB (kb/ and references.bib) whose second commit changes one line."""
    root = where / "kb-root"
    root.mkdir()
    shutil.copytree(source / "kb", root / "kb")
    shutil.copyfile(source / "references.bib", root / "references.bib")
    (root / ".gitignore").write_text("index/\nreleases/\n")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "First state")
    path = root / "kb" / "recommendations" / f"{record}.yaml"
    text = path.read_text("utf-8")
    assert text.count(old) == 1
    path.write_text(text.replace(old, new), "utf-8")
    git(root, "commit", "-qam", f"Correct the level of {record}: the source says so")
    return root


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    root = two_commits(
        DATA / "kb", tmp_path_factory.mktemp("release"), "guide2020-np-m1-hf", "level: A", "level: B"
    )
    done = tmskb(root, "release", "--version", "1.2.0", "--date", "2026-12-02", "--since", "HEAD~1")
    return root, done


def test_the_changelog_names_the_record_whose_level_changed(released) -> None:
    root, done = released
    assert done.returncode == 0, done.stderr
    assert "Level or verdict changed: guide2020-np-m1-hf" in done.stdout
    assert "Level A (as published) → Level B (as published)" in done.stdout
    package = root / "releases" / "tms-evidence-kb-1.2.0"
    assert "`guide2020-np-m1-hf`" in (package / "CHANGES.md").read_text("utf-8")
    recorded = json.loads((package / "datapackage.json").read_text("utf-8"))["tmskb"]
    assert recorded["level_or_verdict_changed"] == ["guide2020-np-m1-hf"]
    assert recorded["version"] == "1.2.0" and recorded["date"] == "2026-12-02"


def test_the_package_validates_and_its_hashes_are_its_files(released) -> None:
    root, _ = released
    package = root / "releases" / "tms-evidence-kb-1.2.0"
    report = frictionless.validate(str(package / "datapackage.json"))
    assert report.valid, report.flatten(["type", "note"])
    descriptor = json.loads((package / "datapackage.json").read_text("utf-8"))
    names = {r["name"] for r in descriptor["resources"]}
    assert {"records", "evidence", "references", "fhir-bundle", "changes"} <= names
    for resource in descriptor["resources"]:
        digest = hashlib.sha256((package / resource["path"]).read_bytes()).hexdigest()
        assert resource["hash"] == f"sha256:{digest}", resource["path"]
    assert (package / "references.bib").read_bytes() == (root / "references.bib").read_bytes()
    bundle = Bundle.model_validate_json((package / "tms-evidence-kb.fhir.json").read_bytes())
    assert bundle.entry  # the FHIR R5 Bundle of the whole KB, read back with fhir.resources


def test_the_version_shows_in_the_interface_and_the_api(released) -> None:
    root, _ = released
    assert json.loads((root / "kb" / "release.json").read_text("utf-8")) == {
        "version": "1.2.0",
        "date": "2026-12-02",
    }
    client = create_app({"INDEX_DIR": str(root / "index"), "TESTING": True}).test_client()
    footer = client.get("/").get_data(as_text=True)
    assert "version 1.2.0 of" in footer and 'datetime="2026-12-02"' in footer
    package = json.loads((root / "releases" / "tms-evidence-kb-1.2.0" / "datapackage.json").read_text())
    assert package["tmskb"]["content_hash"][:19] in footer  # the same content hash as the package
    assert client.get("/api/search?q=rtms").get_json()["kb"]["version"] == "1.2.0"


def test_exports_carry_the_release(released) -> None:
    root, _ = released
    bib = tmskb(root, "export", "", "--format", "bibtex")
    assert bib.returncode == 0, bib.stderr
    assert bib.stdout.startswith("% TMS Evidence KB version 1.2.0 of 2026-12-02, content sha256:")
    fhir = tmskb(root, "export", "", "--format", "fhir")
    tags = {t["system"]: t["code"] for t in json.loads(fhir.stdout)["meta"]["tag"]}
    assert tags["urn:tmskb:kb-version"] == "1.2.0" and tags["urn:tmskb:kb-date"] == "2026-12-02"
    assert Bundle.model_validate_json(fhir.stdout).meta is not None  # still a valid R5 Bundle


def test_a_release_is_never_overwritten_and_refuses_a_kb_with_problems(released, tmp_path: Path) -> None:
    root, _ = released
    again = tmskb(root, "release", "--version", "1.2.0")
    assert again.returncode == 1 and "already exists" in again.stderr
    broken = tmp_path / "broken"
    shutil.copytree(DATA / "kb", broken)
    (broken / "kb" / "studies" / "draft2020.yaml").write_text("id: draft2020\ntype: study\n")
    refused = tmskb(broken, "release", "--version", "0.1.0")
    assert refused.returncode == 1 and "draft2020" in refused.stderr
    assert not (broken / "releases").exists() or not any((broken / "releases").iterdir())


def test_a_release_compares_with_an_earlier_package(released, tmp_path: Path) -> None:
    root, _ = released
    path = root / "kb" / "recommendations" / "guide2020-np-m1-hf.yaml"
    path.write_text(path.read_text("utf-8").replace("level: B", "level: C"), "utf-8")
    earlier = root / "releases" / "tms-evidence-kb-1.2.0"
    done = tmskb(root, "release", "--version", "1.3.0", "--since", str(earlier), "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "Level B (as published) → Level C (as published)" in done.stdout


@pytest.fixture(scope="module")
def bundled_history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled KB in a two-commit repository whose second commit changes the published level
    of the 2020 neuropathic-pain recommendation; `tmskb changes` run on it."""
    root = two_commits(
        PROJECT, tmp_path_factory.mktemp("history"), "lefaucheur2020-np-m1-hf", "level: A", "level: B"
    )
    done = tmskb(root, "changes")
    assert done.returncode == 0, done.stderr
    assert "lefaucheur2020-np-m1-hf" in done.stdout
    assert tmskb(root, "index").returncode == 0
    return root


def test_the_feed_is_atom_and_names_the_change(bundled_history: Path) -> None:
    client = create_app({"INDEX_DIR": str(bundled_history / "index"), "TESTING": True}).test_client()
    response = client.get("/changes.atom")
    assert response.status_code == 200 and response.mimetype == "application/atom+xml"
    feed = feedparser.parse(response.data)
    assert feed.version == "atom10" and not feed.bozo
    assert len(feed.entries) == 1  # the first commit is the baseline: nothing "changed" in it
    assert "lefaucheur2020-np-m1-hf" in feed.entries[0].title
    assert "Level A (as published) → Level B (as published)" in feed.entries[0].content[0].value


def test_the_changes_page_and_the_question_page_say_what_changed(bundled_history: Path) -> None:
    client = create_app({"INDEX_DIR": str(bundled_history / "index"), "TESTING": True}).test_client()
    page = client.get("/changes?record=lefaucheur2020-np-m1-hf").get_data(as_text=True)
    assert "Correct the level of lefaucheur2020-np-m1-hf" in page and "published level" in page
    question = client.get("/questions/np-hf-rtms-m1").get_data(as_text=True)
    assert 'data-changed="yes">Changed on' in question
    assert "because: Correct the level of lefaucheur2020-np-m1-hf" in question
    assert "Verdict unchanged since" in question  # the other sources' verdicts did not change


def test_index_publishes_a_hand_edited_release_file(tmp_path: Path) -> None:
    """A curator who edits kb/release.json and runs `tmskb index` sees the new version, even
    when no record changed (the index is otherwise current)."""
    root = tmp_path / "kb-root"
    shutil.copytree(DATA / "kb", root)
    for version in ("2.0.0", "2.0.1"):
        (root / "kb" / "release.json").write_text(json.dumps({"version": version, "date": "2026-12-02"}))
        done = tmskb(root, "index")
        assert done.returncode == 0, done.stderr
        client = create_app({"INDEX_DIR": str(root / "index"), "TESTING": True}).test_client()
        assert f"version {version} of" in client.get("/").get_data(as_text=True)
        assert client.get("/api/search?q=rtms").get_json()["kb"]["version"] == version
