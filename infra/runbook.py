"""The alert runbook as the edge proxy serves it: alerts/RUNBOOK.md as one self-contained HTML page.

Every alert's runbook_url points at `<web URL>/runbook/#<alert name in lower case>`, so the
links work on every stack, offline, and always describe the rules that stack runs. The
conversion is deliberately small (headings, paragraphs, preformatted lists, code, links,
bold): everything is escaped first, so no text of the runbook can become markup.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

from infra.config import StackConfig

RUNBOOK_PATH = "/runbook/"
"""Where the edge proxy serves the page, under the stack's web URL."""

# the dev stack's runbook, as alerts/*.rules.yml spell it; rendering puts each stack's own in its place
COMMITTED_RUNBOOK_URL = "https://localhost:20443/runbook/"

_HEADING = re.compile(r"^(#{1,3})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*```")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|[0-9]+[.)])\s")
# `code`, [text](link) and **bold**: the only inline markup turned into HTML
_INLINE = re.compile(r"`(?P<code>[^`]+)`|\[(?P<text>[^\]]+)\]\((?P<href>[^)\s]+)\)|\*\*(?P<strong>[^*]+)\*\*")
_SAFE_HREF = re.compile(r"^(?:#|https?://)")

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.5}"
    "pre{white-space:pre-wrap;font-family:inherit;margin:0 0 1rem}"
    "code{font-family:ui-monospace,monospace;background:#f2f2f2;padding:0 .2em}"
    "pre.code{font-family:ui-monospace,monospace;background:#f2f2f2;padding:.5rem}"
    "h2{border-top:1px solid #ccc;padding-top:1rem}"
)


def section_anchor(heading: str) -> str:
    """The id of a heading, as runbook links spell it: lower case, ASCII letters and digits only."""
    return "".join(char for char in heading.lower() if char.isascii() and char.isalnum())


def runbook_url(config: StackConfig) -> str:
    """Where the stack's alerts link to: the operator's copy (monitoring.runbookUrl) or the proxy's page."""
    override = config.monitoring.runbook_url
    if override is not None:
        return override
    return config.edge.public_urls(config.environment).web + RUNBOOK_PATH


def _inline(text: str) -> str:
    """Escaped text with code spans, in-page or http(s) links and bold turned into elements."""
    parts: list[str] = []
    position = 0
    for match in _INLINE.finditer(text):
        parts.append(html.escape(text[position : match.start()]))
        if match["code"] is not None:
            parts.append(f"<code>{html.escape(match['code'])}</code>")
        elif match["strong"] is not None:
            parts.append(f"<strong>{html.escape(match['strong'])}</strong>")
        elif _SAFE_HREF.match(match["href"]):
            parts.append(f'<a href="{html.escape(match["href"])}">{html.escape(match["text"])}</a>')
        else:
            parts.append(html.escape(match[0]))
        position = match.end()
    parts.append(html.escape(text[position:]))
    return "".join(parts)


def _blocks(markdown: str) -> Iterator[str]:
    """The page's body elements, one per heading, fenced code block or run of non-blank lines."""
    lines = markdown.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if not line.strip():
            index += 1
            continue
        heading = _HEADING.match(line)
        if heading:
            level, title = len(heading[1]), heading[2]
            yield f'<h{level} id="{section_anchor(title)}">{_inline(title)}</h{level}>'
            index += 1
            continue
        if _FENCE.match(line):
            end = index + 1
            while end < len(lines) and not _FENCE.match(lines[end]):
                end += 1
            yield '<pre class="code">' + html.escape("\n".join(lines[index + 1 : end])) + "</pre>"
            index = end + 1
            continue
        end = index
        while end < len(lines) and lines[end].strip() and not (_HEADING.match(lines[end]) or _FENCE.match(lines[end])):
            end += 1
        block = lines[index:end]
        if any(_LIST_ITEM.match(item) for item in block):
            # numbered steps and their indented continuations keep their layout
            yield "<pre>" + "\n".join(_inline(item) for item in block) + "</pre>"
        else:
            yield "<p>" + _inline(" ".join(item.strip() for item in block)) + "</p>"
        index = end


def render_runbook_html(markdown: str, title: str) -> str:
    """A self-contained HTML page (no script, no external resource) of a runbook written in Markdown."""
    body = "\n".join(_blocks(markdown))
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n'
        "<head>\n"
        '<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n"
        f"<style>{_STYLE}</style>\n"
        "</head>\n"
        "<body>\n"
        f"{body}\n"
        "</body>\n"
        "</html>\n"
    )
