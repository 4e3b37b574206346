"""Shared by every layer: finding the real tools the tests drive."""

from __future__ import annotations

import glob
import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI") == "true"


def find_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found is None and name in {"initdb", "pg_ctl", "postgres", "pg_dump", "pg_restore", "psql"}:
        # Debian keeps PostgreSQL's server binaries off PATH
        candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
        found = candidates[-1] if candidates else None
    return found


def require_tool(name: str) -> str:
    """Path of a tool a test needs: skip without it, but fail under CI=true where scripts/test installs it."""
    path = find_tool(name)
    if path is None:
        message = f"{name} is not installed (scripts/test installs it with apt-get)"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


def require_root(reason: str) -> None:
    if os.geteuid() != 0:
        message = f"needs root: {reason}"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


# tools of the deployed release, built from the Go module proxy by scripts/test
PINNED_TOOLS = ROOT / ".cache" / "go"


def require_pinned_tool(name: str, version: str) -> str:
    """Path of `name` built at `version` by scripts/test: skip without it, but fail under CI=true."""
    path = PINNED_TOOLS / "bin" / name
    stamp = PINNED_TOOLS / f"{name}.version"
    if not path.is_file() or not stamp.is_file() or stamp.read_text().strip() != version:
        message = f"{name} {version} is not built (scripts/test builds it with go install)"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return str(path)
