"""The one loader for YAML that people write (custom resources, runtime configs, command-line values).

Plain ``yaml.safe_load`` constructs anything a file describes. A few hundred bytes of nested aliases expand to
billions of nodes (minutes and gigabytes before a MemoryError), a few thousand nested brackets overflow the
recursive composer, a file in another encoding fails deep in a decoder, and a key written twice silently keeps the
last value. This loader refuses each of them while composing, before anything is built, with the line and column
of the culprit:

- text must be UTF-8 (a BOM is accepted) and at most :data:`MAX_BYTES`;
- nodes may nest at most :data:`MAX_DEPTH` deep;
- a document may expand (aliases followed) to at most :data:`MAX_NODES` nodes, so anchors stay usable for what
  people use them for (sharing a block or two) but cannot multiply;
- a mapping may not hold the same key twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 100
MAX_NODES = 100_000


@dataclass(frozen=True)
class YamlFileError(ValueError):
    """A file that is not usable YAML; ``line``/``column`` are 1-based (None when not known)."""

    file: str
    message: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line else "") + (f":{self.column}" if self.column else "")
        return f"{where}: {self.message}"


class _LimitExceeded(yaml.MarkedYAMLError):
    """Raised while composing; turned into a YamlFileError with the mark's position."""


class _GuardedLoader(yaml.SafeLoader):
    """SafeLoader that tracks nesting depth and expanded size per node and rejects duplicate keys."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0
        self._sizes: dict[int, int] = {}

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event = self.peek_event()
        mark = event.start_mark
        if isinstance(event, yaml.AliasEvent):
            target = self.anchors.get(event.anchor)
            if target is not None and id(target) not in self._sizes:  # still being composed: it contains itself
                raise _LimitExceeded(problem=f"alias *{event.anchor} is inside its own anchor (a recursive "
                                     "structure)", problem_mark=mark)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _LimitExceeded(problem=f"nested more than {MAX_DEPTH} levels deep", problem_mark=mark)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if node is None:
            return None
        size = self._sizes.get(id(node))
        if size is None:  # an alias returns its anchored node, already counted with its whole subtree
            size = 1 + sum([self._sizes[id(child)] for child in _children(node)])
            self._sizes[id(node)] = size
        if size > MAX_NODES:
            raise _LimitExceeded(problem=f"expands to more than {MAX_NODES:,} nodes (aliases repeating anchors); "
                                 "write the values out or use fewer aliases", problem_mark=mark)
        return node

    def compose_mapping_node(self, anchor: Any) -> MappingNode:
        node = super().compose_mapping_node(anchor)
        seen: dict[tuple[str, str], int] = {}
        for index, (key, _) in enumerate(node.value):
            if not isinstance(key, ScalarNode):
                continue
            first = seen.setdefault((key.tag, key.value), index)
            if first != index:
                line = node.value[first][0].start_mark.line + 1
                raise _LimitExceeded(problem=f"duplicate key {key.value!r} (first at line {line}); "
                                     "a mapping holds each key once", problem_mark=key.start_mark)
        return node


def _children(node: Node) -> Iterator[Node]:
    if isinstance(node, SequenceNode):
        yield from node.value
    elif isinstance(node, MappingNode):
        for key, value in node.value:
            yield key
            yield value


def decode(raw: bytes, file: str) -> str:
    """UTF-8 text of ``raw``. Raises YamlFileError at the line and column of the first byte that is not UTF-8."""
    if len(raw) > MAX_BYTES:
        raise YamlFileError(file, f"file is {len(raw):,} bytes; expected at most {MAX_BYTES:,} for a YAML file")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line_start = raw.rfind(b"\n", 0, exc.start) + 1
        raise YamlFileError(file, f"not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file as UTF-8",
                            raw.count(b"\n", 0, exc.start) + 1, exc.start - line_start + 1) from None


def compose_all(text: str, file: str) -> Iterator[tuple[Node | None, Any]]:
    """(node, value) for every document of ``text``; node is None for an empty document.

    Raises:
        YamlFileError: bad syntax, too deep, too large an expansion or a duplicate key, with line and column.
    """
    loader = _GuardedLoader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            yield node, (loader.construct_document(node) if node is not None else None)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        message = problem if isinstance(exc, _LimitExceeded) else f"invalid YAML: {problem}"
        raise YamlFileError(file, message, mark.line + 1 if mark else None,
                            mark.column + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise YamlFileError(file, f"invalid YAML: {exc}") from None
    finally:
        loader.dispose()


def read_text(path: str | Path) -> str:
    """The UTF-8 text of a YAML file. Raises YamlFileError (unreadable, too large, not UTF-8)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise YamlFileError(str(path), f"cannot read file: {exc.strerror or exc}") from None
    return decode(raw, str(path))


def load_value(text: str, where: str = "<command line>") -> Any:
    """One YAML value from a short string (a ``key=value`` override), with the same limits as files."""
    values = [value for _, value in compose_all(text, where)]
    return values[0] if values else None
