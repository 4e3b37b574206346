"""A reader for the subset of Alloy's configuration syntax that templates/alloy/config.alloy.j2 emits.

No Alloy binary exists here, so the tests read the rendered file with this instead of `alloy fmt`
or `alloy validate`. What it accepts, it decodes as Alloy's own scanner and parser do
(grafana/alloy syntax/scanner/scanner.go, syntax/parser/internal.go, syntax/internal/transform/value.go):

- `//` comments to the end of the line;
- blocks: a dotted name (`stage.replace`), an optional double-quoted label that must be an
  identifier, then `{` on the same line; attributes: `name = value`; one statement per line;
- values: strings, integers, `true`/`false`/`null`, lists `[...]`, objects `{ key = value }` with
  identifier or plain double-quoted keys, and references to other components' exports
  (`discovery.docker.containers.targets`, kept as `Reference`);
- raw strings in backticks are taken as written, multi-line allowed, carriage returns dropped (Go's
  strconv.Unquote); double-quoted strings are taken as written when they hold no backslash;
- in a list or object, every element followed by a line break needs a comma, as Alloy requires.

Outside the subset, and refused with `AlloySubsetError` rather than guessed at: escape sequences in
double-quoted strings, `/* */` comments, floats, operators, function calls and indexing. So a file
this module reads holds exactly the values it returns; a file it refuses may still be valid Alloy.
It does not check component names, argument names or types: that is `alloy validate`'s job.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar, Union

Value = Union[str, int, bool, None, "Reference", list["Value"], dict[str, "Value"]]
_Element = TypeVar("_Element")


class AlloySubsetError(ValueError):
    """The text is not in the subset this reader decodes (it may or may not be valid Alloy)."""


@dataclass(frozen=True)
class Reference:
    """A traversal such as `loki.process.redact.receiver`: another component's export."""

    path: str


@dataclass
class Block:
    name: str
    label: str | None
    attributes: dict[str, Value] = field(default_factory=dict)
    blocks: list[Block] = field(default_factory=list)
    start: int = 0
    """Offset of the block's name in the text; `end` is just past its closing brace."""
    end: int = 0

    def children(self, name: str) -> list[Block]:
        return [block for block in self.blocks if block.name == name]

    def child(self, name: str, label: str | None = None) -> Block:
        (found,) = [block for block in self.blocks if block.name == name and block.label == label]
        return found


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    start: int
    end: int
    after_newline: bool


_TOKEN = re.compile(
    r"(?P<comment>//[^\n]*)"
    r"|(?P<block_comment>/\*)"
    r"|(?P<newline>\n)"
    r"|(?P<space>[ \t\r]+)"
    r"|(?P<raw>`[^`]*`)"
    r'|(?P<quoted>"[^"\n]*")'
    r"|(?P<float>[0-9]+\.[0-9]*|\.[0-9]+)"
    r"|(?P<number>[0-9]+)"
    r"|(?P<ident>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<punct>[=.{}\[\],])"
)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _tokens(text: str) -> list[_Token]:
    found: list[_Token] = []
    position, newline = 0, True
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            line = text.count("\n", 0, position) + 1
            raise AlloySubsetError(f"line {line}: {text[position:position + 20]!r} is outside the subset")
        kind = match.lastgroup or ""
        if kind == "block_comment":
            raise AlloySubsetError("/* */ comments are outside the subset")
        if kind == "float":
            raise AlloySubsetError(f"float {match[0]!r} is outside the subset")
        if kind == "quoted" and "\\" in match[0]:
            raise AlloySubsetError(f"escape sequences in {match[0]!r} are outside the subset")
        if kind == "newline":
            newline = True
        elif kind not in ("space", "comment"):
            found.append(_Token(kind, match[0], match.start(), match.end(), newline))
            newline = False
        position = match.end()
    found.append(_Token("eof", "", len(text), len(text), True))
    return found


def _string(token: _Token) -> str:
    # Go's strconv.Unquote drops carriage returns from raw strings; the quoted form here has no escapes
    return token.text[1:-1].replace("\r", "") if token.kind == "raw" else token.text[1:-1]


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.index = 0

    @property
    def token(self) -> _Token:
        return self.tokens[self.index]

    def take(self, kind: str, text: str | None = None) -> _Token:
        token = self.token
        if token.kind != kind or (text is not None and token.text != text):
            raise AlloySubsetError(f"expected {text or kind} at offset {token.start}, got {token.text!r}")
        self.index += 1
        return token

    def at(self, text: str) -> bool:
        return self.token.kind == "punct" and self.token.text == text

    def body(self, block: Block, closer: str) -> None:
        first = True
        while not (self.token.kind == "eof" if closer == "eof" else self.at(closer)):
            if not first and not self.token.after_newline:
                raise AlloySubsetError(f"two statements on one line at offset {self.token.start}")
            first = False
            self.statement(block)

    def statement(self, parent: Block) -> None:
        start = self.token.start
        fragments = [self.take("ident").text]
        while self.at("."):
            self.take("punct", ".")
            fragments.append(self.take("ident").text)
        if self.at("="):
            if len(fragments) > 1:
                raise AlloySubsetError(f"attribute name {'.'.join(fragments)!r} has dots")
            if self.token.after_newline:
                raise AlloySubsetError(f"'=' of {fragments[0]} is not on its line")
            self.take("punct", "=")
            if fragments[0] in parent.attributes:
                raise AlloySubsetError(f"attribute {fragments[0]!r} set twice")
            parent.attributes[fragments[0]] = self.value()
            return
        label = None
        if self.token.kind == "quoted":
            label = _string(self.take("quoted"))
            if not _IDENTIFIER.fullmatch(label):
                raise AlloySubsetError(f"block label {label!r} is not an identifier")
        if self.token.after_newline:
            raise AlloySubsetError(f"'{{' of block {'.'.join(fragments)} is not on its line")
        self.take("punct", "{")
        block = Block(".".join(fragments), label, start=start)
        self.body(block, "}")
        block.end = self.take("punct", "}").end
        parent.blocks.append(block)

    def value(self) -> Value:
        token = self.token
        if token.kind in ("raw", "quoted"):
            self.index += 1
            return _string(token)
        if token.kind == "number":
            self.index += 1
            return int(token.text)
        if token.kind == "ident":
            if token.text in ("true", "false", "null"):
                self.index += 1
                return {"true": True, "false": False, "null": None}[token.text]
            return self.reference()
        if self.at("["):
            return self.elements("[", "]", self.value)
        if self.at("{"):
            pairs = self.elements("{", "}", self.field)
            keys = [key for key, _ in pairs]
            if len(set(keys)) != len(keys):
                raise AlloySubsetError(f"object has a key twice: {keys}")
            return dict(pairs)
        raise AlloySubsetError(f"value {token.text!r} at offset {token.start} is outside the subset")

    def reference(self) -> Reference:
        fragments = [self.take("ident").text]
        while self.at("."):
            self.take("punct", ".")
            fragments.append(self.take("ident").text)
        return Reference(".".join(fragments))

    def field(self) -> tuple[str, Value]:
        key = self.token
        if key.kind not in ("ident", "quoted"):
            raise AlloySubsetError(f"object key {key.text!r} at offset {key.start} is not a name")
        self.index += 1
        self.take("punct", "=")
        return (key.text if key.kind == "ident" else _string(key)), self.value()

    def elements(self, opener: str, closer: str, element: Callable[[], _Element]) -> list[_Element]:
        self.take("punct", opener)
        found: list[_Element] = []
        while not self.at(closer):
            found.append(element())
            if self.at(","):
                self.take("punct", ",")
            elif not self.at(closer) or self.token.after_newline:
                # Alloy ends the line with a terminator unless a comma precedes the line break
                raise AlloySubsetError(f"missing ',' before offset {self.token.start}")
        self.take("punct", closer)
        return found


def parse(text: str) -> Block:
    """The whole file as the body of a nameless root block."""
    parser = _Parser(text)
    root = Block("", None, start=0, end=len(text))
    parser.body(root, "eof")
    return root
