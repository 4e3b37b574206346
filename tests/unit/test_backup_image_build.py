"""The backup image's build inputs as the docker provider reads them, not as the mocks echo them.

terraform-provider-docker (bridged by pulumi-docker 5.x) builds `RemoteImage(build=...)` with
buildx by default: the context goes through filepath.Abs (relative to the provider's working
directory, the directory of `main`), a relative Dockerfile is joined to the context, and labels
are read from `label` only (internal/provider/resource_docker_image_funcs.go `buildImage`,
docker_buildx_build.go). The context sent to the builder is what `.dockerignore` keeps.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.unit.pulumi_harness import deploy, engine_working_directory

REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"


@pytest.fixture(scope="module")
def build() -> dict[str, Any]:
    return dict(deploy("dev").named("backup-image", REMOTE_IMAGE).inputs["build"])


def provider_paths(build: dict[str, Any], working_directory: Path) -> tuple[Path, Path]:
    """Context and Dockerfile where the provider's buildx path looks for them."""
    context = Path(os.path.normpath(working_directory / build["context"]))
    dockerfile = Path(build["dockerfile"])
    return context, dockerfile if dockerfile.is_absolute() else context / dockerfile


def test_the_build_context_is_the_project_root_from_the_engines_working_directory(build: dict[str, Any]) -> None:
    context, dockerfile = provider_paths(build, engine_working_directory())
    assert engine_working_directory() == ROOT / "infra", "Pulumi.yaml's main is infra/program.py"
    assert context == ROOT and dockerfile == ROOT / "scripts/opscli/Dockerfile" and dockerfile.is_file()
    # the same from anywhere else: a relative context would move with the working directory
    assert provider_paths(build, Path("/")) == (context, dockerfile)


def test_image_labels_go_where_the_buildx_path_reads_them(build: dict[str, Any]) -> None:
    assert build["label"] == {"io.minio-platform.stack": "minio-dev", "io.minio-platform.service": "backup"}
    assert "labels" not in build


def ignore_patterns(context: Path) -> list[tuple[bool, str]]:
    rules = []
    for line in (context / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rules.append((line.startswith("!"), line.removeprefix("!").rstrip("/")))
    return rules


def kept_in_context(relative: str, rules: list[tuple[bool, str]]) -> bool:
    """moby/patternmatcher semantics: the last pattern matching the path or one of its parents decides."""
    parts = relative.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    keep = True
    for negated, pattern in rules:
        if any(pattern_regex(pattern).fullmatch(candidate) for candidate in candidates):
            keep = negated
    return keep


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as moby/patternmatcher reads it: `**/` any directories, `*` within one."""
    regex = ""
    for token in re.findall(r"\*\*/|\*\*|\*|\?|[^*?]+", pattern):
        regex += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(token, re.escape(token))
    return re.compile(regex)


def copied_sources(dockerfile: Path) -> list[str]:
    sources = []
    for line in dockerfile.read_text().splitlines():
        if line.startswith("COPY "):
            sources += [word.rstrip("/") for word in line.split()[1:-1] if not word.startswith("--")]
    return sources


def test_dockerignore_keeps_the_context_to_what_the_dockerfile_copies(build: dict[str, Any]) -> None:
    context, dockerfile = provider_paths(build, engine_working_directory())
    rules, sources = ignore_patterns(context), copied_sources(dockerfile)
    assert sources, "the Dockerfile copies nothing?"
    tracked = [
        path.relative_to(context).as_posix()
        for path in context.rglob("*")
        if path.is_file() and not {".git", ".venv", "__pycache__"} & set(path.relative_to(context).parts)
    ]
    sent = {path for path in tracked if kept_in_context(path, rules)}
    needed = {path for path in tracked if any(path == s or path.startswith(f"{s}/") for s in sources)}
    assert needed <= sent, f"copied but ignored: {sorted(needed - sent)}"
    assert sent <= needed | {"scripts/opscli/Dockerfile"}, f"sent but never copied: {sorted(sent - needed)}"
    assert not kept_in_context("scripts/opscli/__pycache__/cli.cpython-311.pyc", rules)
