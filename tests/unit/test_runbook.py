"""The runbook page the edge proxy serves: every alert's anchor, escaping, and where alerts link to."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
import yaml

from infra.config import ConfigError, parse_stack_config, read_stack_file, split_config
from infra.edge import RUNBOOK_DIR, edge_files, render_nginx_conf, runbook_page
from infra.monitoring.metrics import ALERTS_DIR
from infra.runbook import COMMITTED_RUNBOOK_URL, render_runbook_html, runbook_url, section_anchor
from infra.secrets import SecretValues
from tests.conftest import ROOT


class _Elements(HTMLParser):
    """Start tags with their attributes, and the text, of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parsed(page: str) -> _Elements:
    elements = _Elements()
    elements.feed(page)
    elements.close()
    return elements


def alert_names() -> list[str]:
    return [
        rule["alert"]
        for path in sorted(ALERTS_DIR.glob("*.rules.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def test_every_alert_of_the_rule_files_has_its_anchor_on_the_page() -> None:
    page = render_runbook_html((ALERTS_DIR / "RUNBOOK.md").read_text(), "Alert runbook")
    ids = [attrs["id"] for tag, attrs in parsed(page).tags if tag in ("h1", "h2", "h3") and "id" in attrs]
    assert len(alert_names()) >= 10
    for alert in alert_names():
        assert alert.lower() in ids, f"RUNBOOK.md has no section for {alert}"
    assert len(ids) == len(set(ids)), "two headings share an anchor"


def test_headings_become_h1_to_h3_with_the_anchor_the_rules_use() -> None:
    page = render_runbook_html("# Alert runbook\n\n## MinIONodeDown\n\n### Step 2: check it\n", "t")
    assert '<h1 id="alertrunbook">Alert runbook</h1>' in page
    assert '<h2 id="minionodedown">MinIONodeDown</h2>' in page
    assert '<h3 id="step2checkit">Step 2: check it</h3>' in page
    assert section_anchor("MinIO-Node Down (v2)") == "minionodedownv2"


def test_html_special_characters_in_the_runbook_and_title_are_escaped() -> None:
    markdown = (
        "## <script>alert(1)</script>\n\n"
        "Paragraph with <b>tags</b> & \"quotes\" and `a < b && c > 'd'`.\n\n"
        "1. [click](javascript:alert(1)) and [ok](#minionodedown)\n"
        "   `docker inspect -f '{{.State.OOMKilled}}'` <img src=x>\n\n"
        "```\n<iframe src=x>\n```\n"
    )
    page = render_runbook_html(markdown, "</title><script>")
    elements = parsed(page)
    allowed = {"html", "head", "meta", "title", "style", "body", "h2", "p", "pre", "code", "a"}
    assert {tag for tag, _ in elements.tags} <= allowed
    assert "<title>&lt;/title&gt;&lt;script&gt;</title>" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>" not in page and "<img" not in page and "<iframe" not in page
    assert "<code>a &lt; b &amp;&amp; c &gt; &#x27;d&#x27;</code>" in page
    # only in-page and http(s) links become links
    assert [attrs["href"] for tag, attrs in elements.tags if tag == "a"] == ["#minionodedown"]
    assert "[click](javascript:alert(1))" in "".join(elements.text)


def test_numbered_steps_keep_their_lines_and_prose_becomes_paragraphs() -> None:
    page = render_runbook_html(
        "**Means**: one node\nis down.\n\n1. first step\n   continued here\n2. second step\n", "t"
    )
    assert "<p><strong>Means</strong>: one node is down.</p>" in page
    assert "<pre>1. first step\n   continued here\n2. second step</pre>" in page


def test_the_page_is_self_contained() -> None:
    page = runbook_page(parse_stack_config("dev", {}))
    assert page.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in page
    assert not re.search(r"<(script|link|img|iframe)\b", page)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_every_stack_delivers_the_page_to_the_folder_its_proxy_serves(stack: str) -> None:
    config = parse_stack_config(stack, {})
    files = {f.path: f for f in edge_files(config, SecretValues.throwaway())}
    page = files["nginx/runbook/index.html"]
    assert page.target == f"{RUNBOOK_DIR}/index.html" and not page.secret
    assert 'id="minionodedown"' in page.content
    conf = render_nginx_conf(config)
    assert re.search(rf"location /runbook/ \{{\s*alias {RUNBOOK_DIR}/;", conf)


def test_alerts_link_to_the_stacks_own_proxy_unless_the_operator_names_a_copy() -> None:
    values, encrypted = read_stack_file(ROOT / "Pulumi.dev.yaml")
    dev, _ = split_config("dev", values, frozenset(), encrypted)
    assert runbook_url(dev) == COMMITTED_RUNBOOK_URL == "https://localhost:20443/runbook/"
    plain = parse_stack_config(
        "dev", {"edge": {"publicHost": "storage.example.com", "httpPort": 8080, "tls": {"mode": "off"}}}
    )
    assert runbook_url(plain) == "http://storage.example.com:8080/runbook/"
    wiki = parse_stack_config("prod", {"monitoring": {"runbookUrl": "https://wiki.example.com/storage/runbook"}})
    assert runbook_url(wiki) == "https://wiki.example.com/storage/runbook"
    assert parse_stack_config("prod", {}).monitoring.runbook_url is None


def test_a_runbook_url_that_is_not_http_is_rejected_with_its_key() -> None:
    with pytest.raises(ConfigError) as error:
        parse_stack_config("dev", {"monitoring": {"runbookUrl": "wiki.example.com/runbook"}})
    assert "monitoring.runbookUrl: 'wiki.example.com/runbook' is not an http(s) URL" in str(error.value)
