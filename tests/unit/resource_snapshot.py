"""Every resource a stack registers under the mocks, as a comparable record: today's, kept in tests/unit/data.

Options that change what the engine does (provider, parent, protect, retain, replacement) are kept
beside the inputs; file contents and secret inputs are kept as digests, so a record is small and
holds nothing secret, yet changes with any file a container receives. What differs from run to run
or checkout to checkout is replaced by a placeholder first: the throwaway TLS pair a run generates,
the checkout's path and the operations image's source digest (its tag).

Rewrite the records after a deliberate change with `python -m tests.unit.resource_snapshot`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from infra.backups import PROJECT_ROOT, image_sources_digest
from infra.config.edge import TLS_CERTIFICATE_KEY, TLS_PRIVATE_KEY_KEY
from tests.unit.pulumi_harness import Deployment, Registration, deploy, operator_tls_secrets

RECORDS = Path(__file__).parent / "data" / "resources"
STACKS = ("dev", "staging", "prod")


def _digest(value: Any) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def _record(registration: Registration, inputs: dict[str, Any]) -> dict[str, Any]:
    """`registration` with `inputs` (its own, placeholders in): secret ones and uploads as digests."""
    inputs = {
        key: {"secret": _digest(value)} if key in registration.secret_paths else _digest(value) if key == "uploads" else value
        for key, value in sorted(inputs.items())
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


def _placeholders() -> dict[str, str]:
    tls = operator_tls_secrets()
    return {
        # as they stand in JSON text: newlines escaped
        json.dumps(tls[TLS_CERTIFICATE_KEY])[1:-1]: "<operator-tls-certificate>",
        json.dumps(tls[TLS_PRIVATE_KEY_KEY])[1:-1]: "<operator-tls-key>",
        str(PROJECT_ROOT): "<project>",
        image_sources_digest()[:16]: "<sources>",
    }


def snapshot(deployment: Deployment) -> list[dict[str, Any]]:
    text = json.dumps([registration.inputs for registration in deployment.resources])
    for value, placeholder in _placeholders().items():
        text = text.replace(value, placeholder)
    records = (_record(r, inputs) for r, inputs in zip(deployment.resources, json.loads(text), strict=True))
    return sorted(records, key=lambda record: record["urn"])


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
