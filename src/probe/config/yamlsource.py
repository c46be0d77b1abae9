"""YAML loading that remembers where every key and item came from.

Config errors name ``file:line:col``; that needs positions, which plain ``yaml.safe_load`` drops. The
loader here builds ordinary dicts and lists (subclasses that carry marks), so the rest of the code
treats them as plain data.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from pathlib import Path
from typing import Any, NamedTuple

import yaml

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_NODES = 200_000


class Location(NamedTuple):
    """A place in a config file; orders by file, line, column."""

    file: str
    line: int  # 1-based
    column: int  # 1-based

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class LocatedDict(dict[Any, Any]):
    """A dict that knows where it, each key, and each value started in the source file."""

    location: Location
    key_locations: dict[Any, Location]
    value_locations: dict[Any, Location]


class LocatedList(list[Any]):
    location: Location
    item_locations: list[Location]


class YamlError(Exception):
    def __init__(self, location: Location, message: str) -> None:
        super().__init__(f"{location}: {message}")
        self.location = location
        self.message = message


def _location(loader: _Loader, mark: yaml.Mark) -> Location:
    return Location(loader.source_name, mark.line + 1, mark.column + 1)


class _Loader(yaml.SafeLoader):
    source_name = "<config>"
    nodes = 0

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        # An explicit tag with a value it cannot hold (!!int abc, !!int '', !!timestamp 2001-02-30) raises
        # plain ValueError, IndexError... from PyYAML: give it the node's position like every other YAML error.
        try:
            return super().construct_object(node, deep)
        except (yaml.YAMLError, YamlError, RecursionError):
            raise
        except Exception as exc:  # PyYAML's constructors also raise IndexError, AttributeError...
            tag = str(node.tag).rsplit(":", 1)[-1]
            raise YamlError(_location(self, node.start_mark), f"invalid {tag} value: {exc}") from None


# YAML 1.2 core schema instead of PyYAML's YAML 1.1 (see docs/configuration.md, "YAML"): only true/false
# are booleans (`on: critical` keeps its key, `country: NO` stays a string; `enabled: yes` still works, the
# typed options accept such strings as booleans), no sexagesimal numbers (the Nagios range 10:20 stays a
# string, not 620), no implicit octal (010 and 0644 stay strings), no timestamps.
_Loader.yaml_implicit_resolvers = {}
_CORE_SCHEMA = (
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("int", r"^(?:[-+]?(?:0|[1-9][0-9]*)|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    ("float", r"^(?:[-+]?(?:\.[0-9]+|[0-9]+\.[0-9]*)(?:[eE][-+]?[0-9]+)?|[-+]?[0-9]+[eE][-+]?[0-9]+"
              r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", "-+.0123456789"),
    ("merge", r"^<<$", "<"),
)
for _tag, _pattern, _first in _CORE_SCHEMA:
    _Loader.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", re.compile(_pattern), list(_first))


class PlainInt(int):
    """An integer as written in the file; ``text`` keeps the spelling for fields that expect a string."""

    text: str


class PlainFloat(float):
    text: str


def _construct_int(loader: _Loader, node: yaml.ScalarNode) -> int:
    text = str(loader.construct_scalar(node))
    base = {"0o": 8, "0x": 16}.get(text[:2], 10)
    value = PlainInt(int(text[2:] if base != 10 else text, base))
    value.text = text
    return value


def _construct_float(loader: _Loader, node: yaml.ScalarNode) -> float:
    value = PlainFloat(loader.construct_yaml_float(node))
    value.text = str(node.value)
    return value


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)  # type: ignore[arg-type]
_Loader.add_constructor("tag:yaml.org,2002:float", _construct_float)  # type: ignore[arg-type]


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LocatedDict:
    explicit = sum(1 for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge")
    loader.flatten_mapping(node)
    merged = len(node.value) - explicit  # flatten_mapping puts merged (<<:) pairs first; the mapping's own win
    data = LocatedDict()
    data.location = _location(loader, node.start_mark)
    data.key_locations, data.value_locations = {}, {}
    own: set[Any] = set()
    for index, (key_node, value_node) in enumerate(node.value):
        key = loader.construct_object(key_node, deep=True)
        where = _location(loader, key_node.start_mark)
        if not isinstance(key, Hashable) or isinstance(key, list | dict):
            raise YamlError(where, "a mapping key must be a plain value")
        if index >= merged:
            if key in own:
                first = data.key_locations[key]
                raise YamlError(where, f"duplicate key {key!r} (first defined at {first.line}:{first.column})")
            own.add(key)
        data[key] = loader.construct_object(value_node, deep=True)
        data.key_locations[key] = where
        data.value_locations[key] = _location(loader, value_node.start_mark)
    return data


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> LocatedList:
    data = LocatedList(loader.construct_object(child, deep=True) for child in node.value)
    data.location = _location(loader, node.start_mark)
    data.item_locations = [_location(loader, child.start_mark) for child in node.value]
    return data


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)  # type: ignore[arg-type]
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_sequence)  # type: ignore[arg-type]


def load_yaml(path: Path, text: str | None = None) -> Any:
    """Parse one YAML document; every failure is a YamlError with a location."""
    name = str(path)
    if text is None:
        from probe.config.files import UnreadableFile, read_bounded

        try:
            text = read_bounded(path, MAX_FILE_BYTES).decode("utf-8")
        except UnreadableFile as exc:
            raise YamlError(Location(name, 1, 1), f"file {exc}") from None
        except UnicodeDecodeError as exc:
            raise YamlError(Location(name, 1, 1), f"not valid UTF-8: {exc.reason}") from None
        except OSError as exc:
            raise YamlError(Location(name, 1, 1), f"cannot read: {exc.strerror or exc}") from None
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:  # the reader rejects control characters before any parsing
        before = text[:exc.position]
        where = Location(name, before.count("\n") + 1, len(before) - before.rfind("\n"))
        raise YamlError(where, "invalid YAML: control character "
                        f"{_codepoint(exc.character)} is not allowed") from None
    loader.source_name = name
    try:
        documents = []
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                _count_nodes(node, name)
                documents.append(loader.construct_document(node))
        if len(documents) > 1:
            raise YamlError(Location(name, 1, 1), "expected one YAML document, found several")
        return documents[0] if documents else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Location(name, mark.line + 1, mark.column + 1) if mark else Location(name, 1, 1)
        line = text.splitlines()[mark.line] if mark and mark.line < len(text.splitlines()) else ""
        hint = _hint(str(exc.problem or exc.context), line, mark.column if mark else 0)
        raise YamlError(where, f"invalid YAML: {exc.problem or exc.context}{hint}") from None
    except yaml.YAMLError as exc:
        raise YamlError(Location(name, 1, 1), f"invalid YAML: {exc}") from None
    except RecursionError:
        raise YamlError(Location(name, 1, 1), "YAML nesting is too deep") from None
    finally:
        loader.dispose()


# A plain value cannot start with these: an unquoted threshold (`warning: >= 80%`, `@10:20`) is the usual case.
_INDICATOR_VALUE = re.compile(r"(?P<key>[^\s{},\[\]#:'\"]+):[ \t]+(?P<value>[>|@%`*&!][^,{}\[\]#]*?)\s*(?=[,}\]#]|$)")


def _hint(problem: str, line: str, column: int) -> str:
    """What a raw PyYAML message usually means, in the words of a checks file."""
    if "'\\t'" in problem:
        return "; indent with spaces, YAML does not allow tabs"
    if alias := re.match(r"found undefined alias '(.*)'", problem):
        return (f"; *{alias.group(1)} refers to an anchor &{alias.group(1)} that is not defined above it "
                "(quote the value if you meant the text)")
    for match in _INDICATOR_VALUE.finditer(line):
        if match.start("value") <= column <= match.end("value") + 1:
            value = match.group("value").replace('"', '\\"')
            return (f"; a value starting with {match.group('value')[0]!r} must be quoted: "
                    f'{match.group("key")}: "{value}"')
    if "mapping values are not allowed" in problem:
        return "; a value containing ': ' must be quoted, or this line is indented deeper than the one above"
    if "expected <block end>" in problem:
        return "; the indentation of this line does not match the lines above it"
    if "found unexpected end of stream" in problem or "while scanning a quoted scalar" in problem:
        return "; a quoted value is not closed"
    if "expected ',' or ']'" in problem or "expected ',' or '}'" in problem:
        return "; a [list] or {mapping} is not closed, or an item in it needs quotes"
    return ""


def _codepoint(character: object) -> str:
    return f"U+{character:04X}" if isinstance(character, int) else repr(character)


def _count_nodes(root: yaml.Node, name: str) -> None:
    """Reject alias bombs ("billion laughs") before anything walks the expanded tree."""
    seen = 0
    stack: list[tuple[yaml.Node, int]] = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        seen += 1
        if seen > MAX_NODES or depth > 100:
            where = Location(name, node.start_mark.line + 1, node.start_mark.column + 1)
            raise YamlError(where, "document is too large or too deeply nested (alias expansion?)")
        if isinstance(node, yaml.SequenceNode):
            stack.extend((child, depth + 1) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.append((key, depth + 1))
                stack.append((value, depth + 1))
