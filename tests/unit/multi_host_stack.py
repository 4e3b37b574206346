"""Four node hosts and the stack's own host on a private network, as every multi-host test names them
(storage.hosts, storage.mainHostAddress); and the dev stack on them as a stack file: what the preflight
and plan tests of a multi-host stack read, through the same path as `--config-file`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from infra.config import PROJECT
from tests.conftest import ROOT

HOSTS = [{"dockerHost": f"ssh://ops@node{node}", "address": f"10.0.0.{10 + node}"} for node in range(1, 5)]
MAIN_HOST_ADDRESS = "10.0.0.10"
# the storage settings of a stack on those hosts
STORAGE_ON_HOSTS: dict[str, Any] = {"hosts": HOSTS, "mainHostAddress": MAIN_HOST_ADDRESS}
# each node's two drives on disks of its own host, node-major (storage.drivePaths)
DRIVE_PATHS = [f"/srv/disk{node}{drive}/minio" for node in range(1, 5) for drive in "ab"]


def dev_stack_file(folder: Path, **storage: Any) -> Path:
    """Pulumi.dev.yaml in `folder`, its storage settings extended with `storage` (keys as in the stack file)."""
    document = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    key = f"{PROJECT}:storage"
    document["config"][key] = {**document["config"][key], **storage}
    path = folder / "Pulumi.dev.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def on_hosts(folder: Path, drive_paths: bool = True) -> Path:
    """The dev stack on four node hosts, with each drive's directory on its node's host when `drive_paths`."""
    extra: dict[str, Any] = {"drivePaths": DRIVE_PATHS} if drive_paths else {}
    return dev_stack_file(folder, **STORAGE_ON_HOSTS, **extra)
