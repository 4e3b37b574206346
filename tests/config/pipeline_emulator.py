"""Runs a RENDERED log pipeline on log lines the way Alloy 1.x and Promtail 3.6 do, with an RE2 engine.

Both renderings are read into one form (a stream-label rule list and a stage tree): Alloy's with
the subset parser in alloy_syntax.py, Promtail's with a YAML loader. Only the stages the project's
configuration uses are implemented, each after its source (Alloy internal/component/loki/process/
stages, Promtail clients/pkg/logentry/stages; the two agree except where noted):

- stream labels: Prometheus relabelling's `replace` action with the default replacement `$1`;
  then every `__` label is dropped (Alloy loki/source/docker/tailer.go, getStreamLabels);
- every label is also an extracted value before the first stage (both pipeline.go files);
- `replace` rewrites every capture group of every match; a group starting where the previous
  replacement ended is replaced by Alloy (`<=`) and skipped by Promtail (`<`);
- `match` runs its stages when the stream selector matches the labels; `json` extracts JMESPath-
  style dotted fields (a missing one is extracted as null); `template` (the one if/else form used);
  `labels` (values that are not strings, numbers or booleans are skipped), `static_labels`, `label_drop`.

An unknown stage or argument fails loudly, so the configuration cannot grow one these tests ignore.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import re2
import yaml

from infra.__main__ import PROJECT_ROOT, main as infra_command
from tests.config.alloy_syntax import Block, parse

AGENTS = ("alloy", "promtail")
# where `render` writes each agent's configuration
CONFIG_FILES = {"alloy": Path("alloy/config.alloy"), "promtail": Path("promtail/promtail.yml")}

_MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*')
_IF_ELSE = re.compile(r"^\{\{ if \.(\w+) \}\}(\w*)\{\{ else \}\}(\w*)\{\{ end \}\}$")


@dataclass
class Entry:
    line: str
    labels: dict[str, str]
    extracted: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Stage:
    kind: str
    """replace, match, json, template, labels, static_labels or label_drop."""
    spec: dict[str, Any]
    stages: tuple[Stage, ...] = ()
    """A match stage's nested stages."""


@dataclass(frozen=True)
class Rule:
    source_labels: tuple[str, ...]
    target_label: str
    regex: str = "(.*)"


@dataclass(frozen=True)
class RenderedPipeline:
    agent: str
    rules: tuple[Rule, ...]
    stages: tuple[Stage, ...]

    def run(self, line: str, meta: dict[str, str]) -> Entry:
        """A line of the container that discovery described with `meta`, through the whole pipeline."""
        entry = Entry(line, stream_labels(self.rules, meta))
        entry.extracted.update(entry.labels)
        run_stages(self.stages, entry, self.agent)
        return entry

    def without(self, index: int) -> RenderedPipeline:
        """The pipeline with its top-level stage `index` removed."""
        return RenderedPipeline(self.agent, self.rules, self.stages[:index] + self.stages[index + 1 :])


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


def stream_labels(rules: tuple[Rule, ...], meta: dict[str, str]) -> dict[str, str]:
    labels = dict(meta)
    for rule in rules:
        value = ";".join(labels.get(name, "") for name in rule.source_labels)
        pattern = re2.compile(rule.regex)
        found = pattern.fullmatch(value)
        if found is None:
            continue
        result = found.group(1) if pattern.groups else ""
        if result:
            labels[rule.target_label] = result
        else:
            labels.pop(rule.target_label, None)
    return {name: value for name, value in labels.items() if not name.startswith("__")}


def replace_all(expression: str, replacement: str, text: str, agent: str) -> str:
    """The replace stage on a string (replace.go, getReplacedEntry)."""
    assert "{{" not in replacement, "templated replacements are not emulated"
    pattern = re2.compile(expression)
    result, previous_end = "", 0
    for match in pattern.finditer(text):
        for group in range(1, (pattern.groups or 0) + 1):
            start, end = match.span(group)
            if start == -1:
                continue
            adjacent_ok = previous_end <= start if agent == "alloy" else previous_end < start
            if previous_end == 0 or adjacent_ok:
                result += text[previous_end:start] + replacement
                previous_end = end
    return result + text[previous_end:]


def _json_path(document: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(document, dict) or key not in document:
            return None
        document = document[key]
    return document


def _as_string(value: Any) -> str | None:
    # getString: JSON numbers are float64, printed without a fraction when whole; null is no string
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return value if isinstance(value, str) else None


def run_stages(stages: tuple[Stage, ...], entry: Entry, agent: str) -> None:
    for stage in stages:
        spec = stage.spec
        if stage.kind == "replace":
            entry.line = replace_all(spec["expression"], spec["replace"], entry.line, agent)
        elif stage.kind == "match":
            if selector_matches(spec["selector"], entry.labels):
                run_stages(stage.stages, entry, agent)
        elif stage.kind == "json":
            try:
                document = json.loads(entry.line)
            except json.JSONDecodeError:
                continue
            for name, path in spec["expressions"].items():
                entry.extracted[name] = _json_path(document, path)
        elif stage.kind == "template":
            form = _IF_ELSE.fullmatch(spec["template"])
            assert form, f"template {spec['template']!r} is not the emulated if/else form"
            entry.extracted[spec["source"]] = form[2] if _as_string(entry.extracted.get(form[1])) else form[3]
        elif stage.kind == "labels":
            for name, source in spec["values"].items():
                value = _as_string(entry.extracted.get(source))
                if value is not None:
                    entry.labels[name] = value
        elif stage.kind == "static_labels":
            entry.labels.update(spec["values"])
        elif stage.kind == "label_drop":
            for name in spec["values"]:
                entry.labels.pop(name, None)
        else:
            raise AssertionError(f"pipeline stage {stage.kind!r} is not emulated by this test")


def _sources(values: dict[str, str | None]) -> dict[str, str]:
    # an empty (Alloy) or null (Promtail) source means the value of the same name
    return {name: source or name for name, source in values.items()}


def _only(spec: dict[str, Any], *allowed: str) -> dict[str, Any]:
    unknown = set(spec) - set(allowed)
    assert not unknown, f"arguments {sorted(unknown)} are not emulated by this test"
    return spec


# --- Promtail: the YAML as rendered -----------------------------------------------------------

_PROMTAIL_KINDS = {"labeldrop": "label_drop"}


def _promtail_stage(item: dict[str, Any]) -> Stage:
    ((kind, spec),) = item.items()
    kind = _PROMTAIL_KINDS.get(kind, kind)
    if kind == "match":
        _only(spec, "selector", "stages")
        return Stage("match", {"selector": spec["selector"]}, tuple(_promtail_stage(inner) for inner in spec["stages"]))
    if kind == "replace":
        return Stage(kind, _only(spec, "expression", "replace"))
    if kind == "json":
        return Stage(kind, {"expressions": _sources(_only(spec, "expressions")["expressions"])})
    if kind == "template":
        return Stage(kind, _only(spec, "source", "template"))
    if kind == "labels":
        return Stage(kind, {"values": _sources(spec)})
    if kind in ("static_labels", "label_drop"):
        return Stage(kind, {"values": spec})
    raise AssertionError(f"pipeline stage {kind!r} is not emulated by this test")


def promtail_pipeline(document: dict[str, Any]) -> RenderedPipeline:
    (scrape,) = document["scrape_configs"]
    rules = tuple(
        Rule(tuple(rule["source_labels"]), rule["target_label"], rule.get("regex", "(.*)"))
        for rule in (_only(item, "source_labels", "target_label", "regex") for item in scrape["relabel_configs"])
    )
    return RenderedPipeline("promtail", rules, tuple(_promtail_stage(item) for item in scrape["pipeline_stages"]))


# --- Alloy: the file as rendered, read with the subset parser ---------------------------------


def _alloy_stage(block: Block) -> Stage:
    assert block.name.startswith("stage."), f"block {block.name!r} in loki.process is not a stage"
    kind = block.name.removeprefix("stage.")
    if kind == "match":
        _only(block.attributes, "selector")
        return Stage("match", dict(block.attributes), tuple(_alloy_stage(inner) for inner in block.blocks))
    assert not block.blocks, f"{block.name} has blocks {[inner.name for inner in block.blocks]}"
    if kind == "replace":
        return Stage(kind, _only(block.attributes, "expression", "replace"))
    if kind == "json":
        return Stage(kind, {"expressions": _sources(_only(block.attributes, "expressions")["expressions"])})
    if kind == "template":
        return Stage(kind, _only(block.attributes, "source", "template"))
    if kind == "labels":
        return Stage(kind, {"values": _sources(_only(block.attributes, "values")["values"])})
    if kind in ("static_labels", "label_drop"):
        return Stage(kind, _only(block.attributes, "values"))
    raise AssertionError(f"pipeline stage {kind!r} is not emulated by this test")


def alloy_pipeline(root: Block) -> RenderedPipeline:
    (relabel,) = root.children("discovery.relabel")
    rules = tuple(
        Rule(tuple(spec["source_labels"]), spec["target_label"], spec.get("regex", "(.*)"))
        for spec in (_only(rule.attributes, "source_labels", "target_label", "regex") for rule in relabel.children("rule"))
    )
    (process,) = root.children("loki.process")
    return RenderedPipeline("alloy", rules, tuple(_alloy_stage(block) for block in process.blocks))


def read_pipeline(agent: str, text: str) -> RenderedPipeline:
    return alloy_pipeline(parse(text)) if agent == "alloy" else promtail_pipeline(yaml.safe_load(text))


def render_agent(stack: str, agent: str, out: Path) -> Path:
    """`python -m infra render` of a stack whose stack file selects `agent`; the agent's rendered config."""
    path = PROJECT_ROOT / f"Pulumi.{stack}.yaml"
    document = yaml.safe_load(path.read_text())
    key = "minio-platform:monitoring"
    document["config"][key] = {**(document["config"].get(key) or {}), "logAgent": agent}
    stack_file = out / f"Pulumi.{stack}.yaml"
    out.mkdir(parents=True, exist_ok=True)
    stack_file.write_text(yaml.safe_dump(document))
    assert infra_command(["render", "--stack", stack, "--config-file", str(stack_file), "--out", str(out / "tree")]) == 0
    return out / "tree" / CONFIG_FILES[agent]
