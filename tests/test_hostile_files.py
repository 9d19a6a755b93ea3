"""Hostile KB files: small YAML files that used to exhaust memory, recurse without end or crash.

Aliases are refused and nesting is bounded (indexer/yamlio.py, docs/kb-format.md). The
commands run in a child process with an address-space and CPU limit, so that the code before
the fix (the alias bomb below took minutes and gigabytes) fails the test instead of the machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import PROJECT

from indexer import yamlio

# Runs argv[3:] under an address-space limit of argv[1] MiB and a CPU limit of argv[2] s, and
# reports its exit status, output, wall time and peak RSS (RUSAGE_CHILDREN: only that child).
LIMITED = textwrap.dedent(
    """
    import json, resource, subprocess, sys, time
    memory, cpu = int(sys.argv[1]) * 2**20, int(sys.argv[2])
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    start = time.perf_counter()
    try:
        done = subprocess.run(sys.argv[3:], capture_output=True, text=True, timeout=2 * cpu)
        rc, out, err = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as exc:
        rc, out, err = "timeout", "", str(exc)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"rc": rc, "stdout": out, "stderr": err, "wall": wall, "peak_mib": peak}))
    """
)
MEMORY_LIMIT_MIB = 2048  # far above a normal run (about 70 MiB), far below the bomb's appetite
CPU_LIMIT_S = 30
PEAK_MIB = 300  # the asserted bounds leave room for a busy shared machine
WALL_S = 5.0


def run_limited(*args: str) -> dict:
    """`python -m indexer ARGS` (the tmskb group) in a limited child; its result and figures."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}  # this checkout, not an installed copy
    command = [sys.executable, "-c", LIMITED, str(MEMORY_LIMIT_MIB), str(CPU_LIMIT_S)]
    done = subprocess.run(
        [*command, sys.executable, "-m", "indexer", *args],
        capture_output=True,
        text=True,
        cwd=PROJECT,
        env=env,
        timeout=4 * CPU_LIMIT_S,
        check=True,
    )
    return json.loads(done.stdout)


def billion_laughs(depth: int) -> str:
    """A study file whose aliases expand to 9**depth strings ('lol'); about 500 bytes at depth 9."""
    lines = ["id: bomb2020", "type: study", 'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, depth + 1)]
    return "\n".join(lines) + "\n"


ALIAS_PROBLEM = (
    "kb/studies/bomb2020.yaml:4: bomb2020: YAML aliases are not allowed (found '*a0'); "
    "write the value out in full (fix the YAML syntax)"
)


@pytest.mark.parametrize("command", ["check", "index --strict", "index"])
def test_alias_bomb_is_one_problem_fast_and_small(kb_root: Path, tmp_path: Path, command: str) -> None:
    """check and a strict build refuse; a plain build leaves the bomb out and indexes the rest."""
    (kb_root / "kb" / "studies" / "bomb2020.yaml").write_text(billion_laughs(9), encoding="utf-8")
    args = [*command.split(), "--root", str(kb_root)]
    if command != "check":
        args += ["--index-dir", str(tmp_path / "index")]
    result = run_limited(*args)
    print(f"{command}: exit {result['rc']}, {result['wall']:.2f} s, peak RSS {result['peak_mib']:.0f} MiB")
    lines = result["stderr"].splitlines()
    assert "Traceback" not in result["stderr"]
    assert result["peak_mib"] < PEAK_MIB and result["wall"] < WALL_S, result
    if command == "index":  # the partial build: the bomb is named as left out, the rest is indexed
        assert result["rc"] == 0, result["stderr"][-2000:]
        assert f"left out: {ALIAS_PROBLEM}" in lines
        assert (tmp_path / "index" / "CURRENT").exists()
        return
    assert result["rc"] == 1, result["stderr"][-2000:]
    assert ALIAS_PROBLEM in lines
    assert "1 problem in 1 file" in result["stderr"]
    assert not (tmp_path / "index" / "CURRENT").exists()  # nothing was built


def test_deep_nesting_is_a_problem_not_a_segfault(kb_root: Path) -> None:
    """100,000 '[' (200 KB) overflowed libyaml's C stack: the process died with SIGSEGV."""
    deep = "id: deep2020\ntype: study\narms: " + "[" * 100_000 + "]" * 100_000 + "\n"
    (kb_root / "kb" / "studies" / "deep2020.yaml").write_text(deep, encoding="utf-8")
    result = run_limited("check", "--root", str(kb_root))
    assert result["rc"] == 1, result
    problem = "kb/studies/deep2020.yaml:3: deep2020: mappings and lists are nested more than 32 levels deep"
    assert f"{problem} (fix the YAML syntax)" in result["stderr"].splitlines()


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        pytest.param(
            "a: &a [*a]\n",
            1,
            "YAML aliases are not allowed (found '*a'); write the value out in full",
            id="recursive_alias",  # a cycle: converting it recursed until RecursionError
        ),
        pytest.param(
            "arm: &arm {target: m1}\narms:\n  - *arm\n",
            3,
            "YAML aliases are not allowed (found '*arm'); write the value out in full",
            id="small_alias",  # legitimate-looking reuse is refused as well (docs/kb-format.md)
        ),
        pytest.param(
            "base: &base {target: m1}\narm:\n  <<: *base\n  side: left\n",
            3,
            "YAML aliases are not allowed (found '*base'); write the value out in full",
            id="merge_key",
        ),
        pytest.param(
            "x: " + "[" * 900 + "]" * 900 + "\n",
            1,
            "mappings and lists are nested more than 32 levels deep",
            id="deep_flow",  # RecursionError before
        ),
        pytest.param(
            "x:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 40)) + "  " * 40 + "v\n",
            33,
            "mappings and lists are nested more than 32 levels deep",
            id="deep_block",
        ),
        pytest.param(
            "- " * 950 + "x\n",
            1,
            "mappings and lists are nested more than 32 levels deep",
            id="deep_dashes",  # RecursionError before
        ),
    ],
)
def test_refused_yaml(text: str, line: int, reason: str) -> None:
    with pytest.raises(yamlio.YamlError) as caught:
        yamlio.load(text)
    assert (caught.value.line, caught.value.reason) == (line, reason)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("id: x\nsummary: 'p < 0.05*, see *Table 2*'\n", id="asterisks_in_text"),
        pytest.param("id: &x x\nlevel: B\n", id="anchor_without_alias"),
        pytest.param(
            "id: x\n" + "".join(f"k{i}: [{i}, {{a: b}}]\n" for i in range(400)), id="long_file_scanned_first"
        ),
        pytest.param("x: " + "[" * 31 + "]" * 31 + "\n", id="deep_but_allowed"),
    ],
)
def test_ordinary_yaml_still_loads(text: str) -> None:
    import yaml

    located = yamlio.load(text)
    assert located.data == yaml.safe_load(text)
    assert located.line("id") == 1 or "id" not in located.data


def test_the_kb_needs_no_more_than_the_limit() -> None:
    """Every KB file loads (and is checked) as before: none uses an alias or nests past 32."""
    for path in sorted((PROJECT / "kb").rglob("*.yaml")):
        yamlio.load(path.read_text(encoding="utf-8"))


def test_alias_bomb_in_a_curation_file_is_one_problem(kb_root: Path) -> None:
    """kb/curation/*.yaml is read by check, index, add and rekey: the same guard applies."""
    curation = kb_root / "kb" / "curation"
    curation.mkdir(parents=True, exist_ok=True)
    bomb = billion_laughs(9).replace("id: bomb2020\ntype: study\n", "aliases: {}\n")
    (curation / "key-aliases.yaml").write_text(bomb, encoding="utf-8")
    result = run_limited("check", "--root", str(kb_root))
    assert result["rc"] == 1, result["stderr"][-2000:]
    assert any(
        line.startswith("kb/curation/key-aliases.yaml:3: key-aliases: YAML aliases are not allowed")
        for line in result["stderr"].splitlines()
    ), result["stderr"][-2000:]
    assert "Traceback" not in result["stderr"]
    assert result["peak_mib"] < PEAK_MIB and result["wall"] < WALL_S, result
