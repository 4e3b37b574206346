"""Pure rendering of configuration files from templates/: plain values in, text out.

No Pulumi type ever reaches a template, so a stack's whole configuration tree can be rendered
offline (`python -m infra render`) and checked by the real tools that read it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import pulumi_docker as docker

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"

_environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    autoescape=False,
)


@dataclass(frozen=True)
class RenderedFile:
    path: str
    """Where `render` writes it, relative to the output folder ('minio/config.env')."""
    target: str
    """Where the container receives it ('/etc/minio/config.env')."""
    content: str
    secret: bool = False
    """Holds secret values, so it is only ever delivered as a secret Output."""


def render_template(name: str, **context: Any) -> str:
    return _environment.get_template(name).render(**context)


@dataclass(frozen=True)
class FileOwner:
    """The user a container reads its secret files as (numeric: the provider resolves names on the
    machine running Pulumi, not in the image)."""

    uid: int
    gid: int


ROOT = FileOwner(0, 0)
SECRET_FILE_MODE = "0600"


def as_uploads(files: Sequence[RenderedFile], secret_owner: FileOwner = ROOT) -> list[docker.ContainerUploadArgs]:
    """Uploads of the rendered files; those holding secrets readable by their owner only, not the default 0644."""
    return [
        docker.ContainerUploadArgs(
            file=item.target,
            content=item.content,
            owner=str(secret_owner.uid),
            group=str(secret_owner.gid),
            permissions=SECRET_FILE_MODE,
        )
        if item.secret
        else docker.ContainerUploadArgs(file=item.target, content=item.content)
        for item in files
    ]
