"""Where to go after a deploy: the stack's URLs, how to read each credential, what the smoke tests found,
and how to tear the stack down. `scripts/deploy` ends with it.

Everything comes from the stack's outputs as `pulumi stack output --json` prints them (secret
values appear there as "[secret]", and none is ever printed here) and from the stack's settings;
so it can be produced, and tested, offline from a saved outputs file.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.secrets import SECRET_SPECS

# how `pulumi stack output --json` shows a secret it was not asked to reveal
SECRET_PLACEHOLDER = "[secret]"
# the last line of a pytest run: "==== 31 passed, 3 skipped in 212.40s (0:03:32) ===="
_PYTEST_RESULT = re.compile(r"^=+ (?P<counts>.+?) in [0-9.]+s(?: \([0-9:]+\))? =+$")
PURPOSES = {spec.key: spec.purpose for spec in SECRET_SPECS.values()}
# what the public endpoints are for; the internal ones (reached inside the stack) are not listed
ENDPOINT_TITLES = {
    "s3": "S3 API",
    "console": "MinIO console",
    "grafana": "Grafana",
    "keycloak": "Keycloak",
    "runbook": "alert runbook",
    "minioAdmin": "admin API (scripts/ops)",
}


@dataclass(frozen=True)
class SmokeResult:
    exit_code: int | None
    """pytest's exit code, or None when the smoke tests did not run."""
    counts: str = ""
    """pytest's final tally ('31 passed, 3 skipped'), when its output was kept."""
    skipped_because: str = ""

    @classmethod
    def from_log(cls, exit_code: int, log: str) -> SmokeResult:
        tallies = [match["counts"] for line in log.splitlines() if (match := _PYTEST_RESULT.match(line.strip()))]
        return cls(exit_code, tallies[-1] if tallies else "")

    def line(self, stack: str) -> str:
        if self.exit_code is None:
            return f"smoke tests: not run ({self.skipped_because}); run them with scripts/smoke {stack}"
        tally = f" ({self.counts})" if self.counts else ""
        if self.exit_code == 0:
            return f"smoke tests: passed{tally}"
        return f"smoke tests: FAILED{tally}, exit code {self.exit_code}; the failures are above, rerun them with scripts/smoke {stack}"


@dataclass(frozen=True)
class PulumiEnvironment:
    """What the Pulumi CLI needs to find this stack's state and decrypt its secrets, as the deploy set it."""

    project_root: Path
    backend_url: str | None
    passphrase_file: str | None
    passphrase_set: bool
    """PULUMI_CONFIG_PASSPHRASE is set (its value is never printed)."""

    @classmethod
    def from_environ(cls, project_root: Path, environ: Mapping[str, str]) -> PulumiEnvironment:
        return cls(
            project_root,
            environ.get("PULUMI_BACKEND_URL") or None,
            environ.get("PULUMI_CONFIG_PASSPHRASE_FILE") or None,
            bool(environ.get("PULUMI_CONFIG_PASSPHRASE")),
        )

    def setup_line(self) -> str:
        exports = ['PATH="$HOME/.pulumi/bin:$PATH"']
        if self.backend_url:
            exports.append(f"PULUMI_BACKEND_URL={shlex.quote(self.backend_url)}")
        if self.passphrase_file:
            exports.append(f"PULUMI_CONFIG_PASSPHRASE_FILE={shlex.quote(self.passphrase_file)}")
        line = f"cd {shlex.quote(str(self.project_root))} && export {' '.join(exports)}"
        if self.passphrase_set and not self.passphrase_file:
            line += "   # and PULUMI_CONFIG_PASSPHRASE as it was set for the deploy"
        return line


def is_secret(name: str, value: Any) -> bool:
    """A secret output: shown as "[secret]", or one of the stack's secrets even in a file made with --show-secrets."""
    return value == SECRET_PLACEHOLDER or name in PURPOSES


def summary_lines(
    stack: str, outputs: Mapping[str, Any], keep_data_on_destroy: bool, environment: PulumiEnvironment, smoke: SmokeResult
) -> list[str]:
    endpoints: Mapping[str, str] = outputs.get("endpoints") or {}
    name = str(outputs.get("name") or stack)
    lines = [f"==> {name} is deployed (stack {stack!r})"]
    shown = [(title, endpoints[key]) for key, title in ENDPOINT_TITLES.items() if key in endpoints]
    width = max((len(title) for title, _ in shown), default=0)
    lines += [f"  {title:<{width}}  {url}" for title, url in shown]

    secrets = sorted(key for key, value in outputs.items() if is_secret(key, value))
    users = sorted(key for key, value in outputs.items() if key.endswith("User") and not is_secret(key, value))
    lines += ["", "credentials: each command prints one; first, in a shell, point the Pulumi CLI at this stack's state:"]
    lines.append(f"  {environment.setup_line()}")
    key_width = max((len(key) for key in secrets), default=0)
    lines += [
        f"  pulumi stack output --show-secrets {key:<{key_width}} --stack {stack}   # {PURPOSES.get(key, key)}" for key in secrets
    ]
    lines += [f"  {key}: {outputs[key]}" for key in users]

    lines += ["", smoke.line(stack), ""]
    volumes = [str(volume) for volume in outputs.get("volumes") or []]
    # --preserve-config: `pulumi stack rm` would delete the stack file, Pulumi.<stack>.yaml, too
    remove = f"pulumi stack rm --yes --preserve-config {stack}"
    if keep_data_on_destroy:
        lines += [
            f"tear down, in that shell: the {len(volumes)} data volumes are protected and kept, so a destroy leaves them and their data;",
            f"  pulumi destroy --yes --exclude-protected --stack {stack}                          # everything but the data volumes",
            f"  pulumi state unprotect --all --yes --stack {stack} && pulumi destroy --yes --stack {stack} && {remove}",
            "      # the whole stack; the volumes stay on the Docker host even then: docker volume rm " + " ".join(volumes),
        ]
    else:
        lines += [
            "tear down, in that shell (deletes every container, network and data volume of the stack):",
            f"  pulumi destroy --yes --stack {stack} && {remove}",
        ]
    return lines
