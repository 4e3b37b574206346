"""Runs a rendered Promtail pipeline on log lines the way Promtail 3.6 does, with an RE2 engine.

Only the stages the project's configuration uses are implemented, each after Promtail's source
(clients/pkg/logentry/stages): `replace` rewrites every capture group of every match, skipping a
group that starts where the previous replacement ended; `match` runs its stages when the stream
selector matches the labels; `json` extracts JMESPath-style dotted fields; `template` (the one
if/else form used); `labels`, `static_labels`, `labeldrop`. An unknown stage fails loudly, so the
configuration cannot grow a stage these tests silently ignore.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import re2

_MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*')
_IF_ELSE = re.compile(r"^\{\{ if \.(\w+) \}\}(\w*)\{\{ else \}\}(\w*)\{\{ end \}\}$")


@dataclass
class Entry:
    line: str
    labels: dict[str, str]
    extracted: dict[str, Any] = field(default_factory=dict)


def parse_selector(selector: str) -> list[tuple[str, str, str]]:
    """A LogQL stream selector without line filters: {name op "value", ...}."""
    body = selector.strip()
    assert body.startswith("{") and body.endswith("}"), f"selector {selector!r} is not a stream selector"
    matchers = []
    for part in body[1:-1].split(","):
        found = _MATCHER.fullmatch(part)
        assert found, f"matcher {part!r} of {selector!r} is not name op \"value\""
        matchers.append((found[1], found[2], found[3].encode().decode("unicode_escape")))
    return matchers


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    for name, op, value in parse_selector(selector):
        actual = labels.get(name, "")
        # label regexes are fully anchored, as in Prometheus
        hit = re2.fullmatch(value, actual) is not None if op in ("=~", "!~") else actual == value
        if hit != (op in ("=", "=~")):
            return False
    return True


def replace_all(expression: str, replacement: str, text: str) -> str:
    """Promtail's replace stage on a string (stages/replace.go, getReplacedEntry)."""
    assert "{{" not in replacement, "templated replacements are not emulated"
    pattern = re2.compile(expression)
    result, previous_end = "", 0
    for match in pattern.finditer(text):
        for group in range(1, (pattern.groups or 0) + 1):
            start, end = match.span(group)
            if start == -1:
                continue
            if previous_end == 0 or previous_end < start:
                result += text[previous_end:start] + replacement
                previous_end = end
    return result + text[previous_end:]


def _json_path(document: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(document, dict) or key not in document:
            return None
        document = document[key]
    return document


def _as_string(value: Any) -> str:
    # Promtail's getString: JSON numbers are float64, printed without a fraction when whole
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return str(value)


def run_stages(stages: list[dict[str, Any]], entry: Entry) -> None:
    for stage in stages:
        ((kind, spec),) = stage.items()
        if kind == "replace":
            assert "source" not in spec, "replace on an extracted value is not emulated"
            entry.line = replace_all(spec["expression"], spec["replace"], entry.line)
        elif kind == "match":
            if selector_matches(spec["selector"], entry.labels):
                run_stages(spec["stages"], entry)
        elif kind == "json":
            try:
                document = json.loads(entry.line)
            except json.JSONDecodeError:
                continue
            for name, path in spec["expressions"].items():
                value = _json_path(document, path or name)
                if value is not None:
                    entry.extracted[name] = value
        elif kind == "template":
            form = _IF_ELSE.fullmatch(spec["template"])
            assert form, f"template {spec['template']!r} is not the emulated if/else form"
            entry.extracted[spec["source"]] = form[2] if entry.extracted.get(form[1]) else form[3]
        elif kind == "labels":
            for name, source in spec.items():
                value = entry.extracted.get(source or name)
                if value is not None and _as_string(value) != "":
                    entry.labels[name] = _as_string(value)
        elif kind == "static_labels":
            entry.labels.update({name: str(value) for name, value in spec.items()})
        elif kind == "labeldrop":
            for name in spec:
                entry.labels.pop(name, None)
        else:
            raise AssertionError(f"pipeline stage {kind!r} is not emulated by this test")


def run_pipeline(config: dict[str, Any], line: str, labels: dict[str, str]) -> Entry:
    (scrape,) = config["scrape_configs"]
    entry = Entry(line, dict(labels))
    run_stages(scrape["pipeline_stages"], entry)
    return entry
