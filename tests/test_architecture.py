"""The module structure docs/architecture.md describes: no import cycles, the library never
imports a front, the read path stays light, and a facet defined only in the registry reaches the
index, the API, the web page and the CLI."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from indexer import fields
from indexer.build import ensure_index
from indexer.cli import cli
from indexer.settings import Settings
from indexer.web import create_app

PROJECT = Path(__file__).parent.parent
FRONTS = (
    "indexer.__main__",
    "indexer.cli",
    "indexer.cli_common",
    "indexer.cli_write",
    "indexer.cli_release",
    "indexer.web",
    "indexer.api",
    "app",
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PROJECT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, name: str) -> set[str]:
    """Project modules imported by a file, at any depth of the file (functions included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    files = [PROJECT / "app.py", *sorted((PROJECT / "indexer").rglob("*.py"))]
    modules = {_module_name(p): p for p in files}
    return {
        name: {m for m in _imports(path, name) if m in modules} - {name} for name, path in modules.items()
    }


def _is_front(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in FRONTS)


def test_no_import_cycles() -> None:
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_the_library_never_imports_a_front() -> None:
    graph = _graph()
    offenders = {
        module: sorted(m for m in targets if _is_front(m))
        for module, targets in graph.items()
        if module.startswith("indexer") and not _is_front(module)
    }
    assert {m: t for m, t in offenders.items() if t} == {}
    # The fronts are thin and separate: the web app and indexer.api never import the CLI.
    for module, targets in graph.items():
        if module.startswith(("indexer.web", "indexer.api", "app")):
            assert not [t for t in targets if t.startswith("indexer.cli")], module


def test_the_checker_sees_a_cycle(tmp_path: Path) -> None:
    """The walker itself: a planted relative-import cycle is found (the test above can fail)."""
    (tmp_path / "a.py").write_text("from .b import x\n")
    (tmp_path / "b.py").write_text("def f():\n    from . import a\n")
    found = _imports(tmp_path / "b.py", "pkg.b")
    assert "pkg.a" in found and "pkg.b" in _imports(tmp_path / "a.py", "pkg.a")


def test_the_search_path_does_not_load_the_parsing_stack() -> None:
    code = (
        "import sys, indexer.search, indexer.web.state; "
        "print(sorted(m for m in ('bibtexparser', 'pylatexenc', 'jsonschema', 'fastjsonschema', 'yaml') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PROJECT
    )
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------
# A facet defined only in the registry


def _coils(record: object, kb: object) -> list[str]:
    """Coil ids of a study's arms or of a recommendation (references have none)."""
    arms = getattr(record, "arms", None)
    if arms is not None:
        return [c for arm in arms for c in arm.coil]
    return list(getattr(record, "coil", ()) or ())


@pytest.fixture
def coil_facet():
    facet = fields.Facet("coil", "Coil", multi=True, vocabulary="coils", extract=_coils)
    with fields.extra_facet(facet):
        yield facet


def test_a_registry_only_facet_reaches_index_api_web_and_cli(coil_facet, kb_root: Path, tmp_path) -> None:
    study = kb_root / "kb" / "studies" / "alpha2010test.yaml"
    text = study.read_text("utf-8")
    assert "coil:" in text
    text = re.sub(r"coil: \[[^\]]*\]", "coil: [figure-of-8]", text, count=1)
    study.write_text(text, "utf-8")
    settings = Settings.for_root(kb_root, tmp_path / "index")
    ensure_index(settings)

    client = create_app({"INDEX_DIR": str(settings.index_dir), "TESTING": True}).test_client()
    api = client.get("/api/search").get_json()
    coil_counts = {v["value"]: v["count"] for v in api["facets"]["coil"]}
    assert coil_counts.get("figure-of-8", 0) >= 1
    filtered = client.get("/api/search?coil=figure-of-8").get_json()
    assert filtered["ok"] and filtered["total"] == coil_counts["figure-of-8"]
    spec = client.get("/api/openapi.json").get_json()
    assert "coil" in [p["name"] for p in spec["paths"]["/api/search"]["get"]["parameters"]]

    page = client.get("/").get_data(as_text=True)
    assert 'id="facet-coil"' in page and "<legend>Coil</legend>" in page
    assert 'name="coil" value="figure-of-8"' in page

    runner = CliRunner()
    assert "--coil" in runner.invoke(cli, ["search", "--help"]).output
    assert "--coil" in runner.invoke(cli, ["export", "--help"]).output
    result = runner.invoke(
        cli,
        ["search", "--coil", "figure-of-8", "--format", "json", "--index-dir", str(settings.index_dir)],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["total"] == coil_counts["figure-of-8"]


def test_an_index_built_without_a_facet_is_rebuilt_when_the_registry_gains_it(
    settings: Settings, coil_facet
) -> None:
    from indexer import index as idx

    with fields.extra_facet(fields.Facet("probe", "Probe", extract=lambda r, kb: ["x"])):
        first = ensure_index(settings)
    assert first is not None and first.full
    again = ensure_index(settings)  # the registry no longer has 'probe': a full rebuild
    assert again is not None and again.full
    generation = idx.current_dir(settings.index_dir)
    assert generation is not None
    manifest = idx.read_manifest(generation)
    assert manifest["fields"] == fields.FACETS.signature()
