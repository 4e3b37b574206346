"""The Alloy subset reader decodes strings as Alloy does and refuses what it cannot decode exactly."""

from __future__ import annotations

import pytest

from infra.monitoring.log_agent import alloy_string
from tests.config.alloy_syntax import AlloySubsetError, Reference, parse


@pytest.mark.parametrize(
    "value",
    [
        "plain",
        r'(?i)(?:signature)(?:=|"\s*:\s*")([^&"\s,]+)',
        '{service="audit-sink"}',
        "{{ if .access_key }}yes{{ else }}no{{ end }}",
        "C:\\path\\",
        "",
    ],
)
def test_every_string_the_renderer_writes_reads_back_unchanged(value: str) -> None:
    assert parse(f"x = {alloy_string(value)}\n").attributes["x"] == value


def test_strings_a_raw_literal_cannot_hold_are_refused_by_the_renderer() -> None:
    for value in ("a`b", "two\nlines", "carriage\rreturn"):
        with pytest.raises(ValueError):
            alloy_string(value)


def test_raw_strings_are_taken_as_written_except_carriage_returns() -> None:
    # Go's strconv.Unquote, which Alloy uses, drops \r from raw strings
    assert parse("x = `a\\nb\r\nc`\n").attributes["x"] == "a\\nb\nc"


def test_blocks_labels_references_lists_and_objects() -> None:
    root = parse(
        'loki.process "redact" {\n'
        "  forward_to = [loki.write.loki.receiver]\n"
        "  // a comment\n"
        "  stage.labels {\n"
        "    values = {\n"
        '      api = "",\n'
        "    }\n"
        "  }\n"
        "}\n"
    )
    process = root.child("loki.process", "redact")
    assert process.attributes == {"forward_to": [Reference("loki.write.loki.receiver")]}
    assert process.child("stage.labels").attributes == {"values": {"api": ""}}


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('x = "a\\"b"\n', "escape sequences"),
        ("x = [\n  1,\n  2\n]\n", "missing ','"),
        ("x = {\n  a = 1\n}\n", "missing ','"),
        ("x = 1 y = 2\n", "two statements"),
        ('block "not-an-identifier" {\n}\n', "not an identifier"),
        ("block\n{\n}\n", "not on its line"),
        ("x = 1.5\n", "float"),
        ("/* c */\n", "comments"),
        ("x = 1\nx = 2\n", "set twice"),
        ("x = concat([1], [2])\n", "outside the subset"),
    ],
)
def test_what_the_subset_cannot_decode_exactly_is_refused(text: str, why: str) -> None:
    with pytest.raises(AlloySubsetError, match=why):
        parse(text)
