"""Documentation stays in step with the code: commands, fields, levels."""

from __future__ import annotations

import re

import pytest
from conftest import PROJECT

from indexer.cli import cli
from indexer.schema import load_schema

README = (PROJECT / "README.md").read_text()
KB_FORMAT = (PROJECT / "docs" / "kb-format.md").read_text()
COMMANDS = sorted(cli.commands)


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help_with_an_example_and_is_in_the_readme(runner, name: str) -> None:
    result = runner.invoke(cli, [name, "--help"])
    assert result.exit_code == 0
    assert "Example: tmskb " + name in result.output
    assert f"tmskb {name}" in README


@pytest.mark.parametrize("schema", ["study", "recommendation", "question", "verdict", "scale"])
def test_every_record_field_is_documented(schema: str) -> None:
    fields = set(load_schema(schema)["properties"]) - {"$schema", "id", "type"}
    missing = [f for f in sorted(fields) if f"`{f}`" not in KB_FORMAT]
    assert missing == []


def test_every_level_and_verification_status_is_documented() -> None:
    for level in ("Level A", "Level B", "Level C"):
        assert level in KB_FORMAT or level in README
    for status in ("full-text", "abstract", "secondary", "as-cited"):
        assert f"`{status}`" in KB_FORMAT


def test_readme_quick_start_commands_exist() -> None:
    targets = set(re.findall(r"^([a-z-]+):", (PROJECT / "Makefile").read_text(), flags=re.M))
    assert {"serve", "test"} <= targets
    assert "make serve" in README and "make test" in README
    assert "make test" in (PROJECT / ".ci" / "run").read_text()
