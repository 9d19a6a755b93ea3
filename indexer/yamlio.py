"""YAML loading that keeps 1-based line numbers for every mapping key and list item.

PyYAML's C composer gives node marks; we turn nodes into plain Python values and keep
a side table of lines keyed by the path to each value ("arms.0.target").

Aliases are refused and nesting is bounded (docs/kb-format.md). An alias is a shared node, and
turning shared nodes into values copies them: nine lines of nested aliases ("billion laughs")
made `tmskb check` run for minutes and use gigabytes. Deep nesting overflowed Python's
recursion limit (about 900 levels) and, past some 30,000, libyaml's C stack (a segfault).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import GeneratorType
from typing import Any

import yaml

try:  # libyaml is several times faster; the pure-Python loader gives the same marks.
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader

_constructor = yaml.SafeLoader("")  # only used to resolve scalar tags to Python values

MAX_DEPTH = 32  # nested mappings and lists; the deepest KB file (a rule set) has 6
# libyaml's composer recurses once per level and crashed between 20,000 and 40,000 levels. Each
# level takes at least one character, so a text up to this long is safe to compose and is
# checked while converting; a longer one (or one with a '*', which every alias starts with) has
# its events checked first. KB records are about 1-3 KB, so this costs nothing in a build.
_SCAN_ABOVE = 4096
_DEPTH_REASON = f"mappings and lists are nested more than {MAX_DEPTH} levels deep"


@dataclass
class Located:
    """A YAML document as plain data plus a line for each path."""

    data: Any
    lines: dict[str, int] = field(default_factory=dict)

    def line(self, path: str, default: int = 1) -> int:
        """Line of the value at `path`, else of its nearest parent, else `default`."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path.rpartition(".")[0]
        return self.lines.get("", default)


class YamlError(Exception):
    """A YAML syntax error with a 1-based line."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(reason)
        self.line = line
        self.reason = reason


def load(text: str) -> Located:
    """Parse one YAML document; raise YamlError on syntax errors, duplicate keys, aliases, deep nesting."""
    try:
        if "*" in text or len(text) > _SCAN_ABOVE:
            _check_events(text)
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        reason = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise YamlError(line, f"YAML syntax error: {reason}") from None
    except yaml.YAMLError as exc:
        raise YamlError(1, f"YAML error: {exc}") from None
    located = Located(None)
    if node is not None:
        located.data = _convert(node, "", located.lines, 1)
    return located


def _check_events(text: str) -> None:
    """Raise YamlError at the first alias or the first collection nested past MAX_DEPTH."""
    depth = 0
    for event in yaml.parse(text, Loader=_Loader):  # libyaml's parser keeps its own stack
        if isinstance(event, yaml.AliasEvent):
            reason = f"YAML aliases are not allowed (found '*{event.anchor}'); write the value out in full"
            raise YamlError(_event_line(event), reason)
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise YamlError(_event_line(event), _DEPTH_REASON)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _event_line(event: yaml.Event) -> int:
    return event.start_mark.line + 1 if event.start_mark else 1


def _convert(node: yaml.Node, path: str, lines: dict[str, int], depth: int) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.CollectionNode) and depth > MAX_DEPTH:
        raise YamlError(node.start_mark.line + 1, _DEPTH_REASON)
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(_scalar(key_node))
            child = f"{path}.{key}" if path else key
            if key in result:
                raise YamlError(key_node.start_mark.line + 1, f"duplicate key '{key}'")
            result[key] = _convert(value_node, child, lines, depth + 1)
            lines[child] = key_node.start_mark.line + 1
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _convert(item, f"{path}.{i}" if path else str(i), lines, depth + 1)
            for i, item in enumerate(node.value)
        ]
    return _scalar(node)


_STR_TAG = "tag:yaml.org,2002:str"


def _scalar(node: yaml.Node) -> Any:
    if type(node) is yaml.ScalarNode and node.tag == _STR_TAG:  # most values: what PyYAML builds
        return node.value
    if not isinstance(node, yaml.ScalarNode):
        raise YamlError(node.start_mark.line + 1, "a mapping or list cannot be used as a key")
    line = node.start_mark.line + 1
    build = _constructor.yaml_constructors.get(node.tag)
    if build is None:
        raise YamlError(line, f"unsupported YAML tag {node.tag}")
    tag = node.tag.removeprefix("tag:yaml.org,2002:")
    try:
        value = build(_constructor, node)
    except (yaml.YAMLError, ValueError, ArithmeticError, LookupError, TypeError, AttributeError) as exc:
        # PyYAML raises these for values its tag cannot hold: 2020-13-45, !!int x, !!binary 0, ...
        shown = node.value if len(node.value) <= 40 else node.value[:40] + "..."
        detail = f" ({exc})" if type(exc) is ValueError and len(str(exc)) <= 60 else ""
        raise YamlError(line, f"'{shown}' is not a valid {tag}{detail}") from None
    if isinstance(value, GeneratorType):  # !!set, !!omap, ... written on a single value
        raise YamlError(line, f"the tag !!{tag} cannot be used on a single value")
    return value
