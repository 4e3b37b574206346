"""Every resource a stack registers under the mocks, as a comparable record: today's, kept in tests/unit/data.

Options that change what the engine does (provider, parent, protect, retain, replacement) are kept
beside the inputs; file contents are kept as digests and secret inputs as a marker, so a record is
small, holds nothing secret and does not change with the throwaway TLS pair a run generates. The
checkout's path and the operations image's source digest (its tag) are kept as placeholders.

Rewrite the records after a deliberate change with `python -m tests.unit.resource_snapshot`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from infra.backups import PROJECT_ROOT, image_sources_digest
from tests.unit.pulumi_harness import Deployment, Registration, deploy

RECORDS = Path(__file__).parent / "data" / "resources"
STACKS = ("dev", "staging", "prod")


def _digest(value: Any) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def _record(registration: Registration) -> dict[str, Any]:
    inputs = {
        key: "<secret>" if key in registration.secret_paths else _digest(value) if key == "uploads" else value
        for key, value in sorted(registration.inputs.items())
    }
    return {
        "urn": registration.urn,
        "provider": registration.provider,
        "parent": registration.parent,
        "inputs": inputs,
        "protect": registration.protect,
        "retainOnDelete": registration.retain_on_delete,
        "deleteBeforeReplace": registration.delete_before_replace,
        "replaceOnChanges": registration.replace_on_changes,
        "ignoreChanges": registration.ignore_changes,
        "dependencies": sorted(registration.dependencies),
    }


def snapshot(deployment: Deployment) -> list[dict[str, Any]]:
    text = json.dumps([_record(r) for r in deployment.resources])
    text = text.replace(str(PROJECT_ROOT), "<project>").replace(image_sources_digest()[:16], "<sources>")
    return sorted(json.loads(text), key=lambda record: record["urn"])


def record_path(stack: str) -> Path:
    return RECORDS / f"{stack}.json"


def current(stack: str) -> list[dict[str, Any]]:
    return snapshot(deploy(stack))


def recorded(stack: str) -> list[dict[str, Any]]:
    return list(json.loads(record_path(stack).read_text()))


if __name__ == "__main__":
    RECORDS.mkdir(parents=True, exist_ok=True)
    for name in STACKS:
        record_path(name).write_text(json.dumps(current(name), indent=1, sort_keys=True) + "\n")
        print(f"wrote {record_path(name)}")
