"""renovate.json: Renovate's own validator accepts it, and its image manager finds exactly the pinned images."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import re2

from infra.config.images import IMAGE_PINS, MINIO
from tests.conftest import IN_CI, ROOT, find_tool

RENOVATE_JSON = ROOT / "renovate.json"
# scripts/test installs the pinned renovate npm package here
VALIDATOR = ROOT / ".cache" / "renovate" / "node_modules" / ".bin" / "renovate-config-validator"
CONFIG_DIR = ROOT / "infra" / "config"


def renovate_config() -> dict[str, Any]:
    config: dict[str, Any] = json.loads(RENOVATE_JSON.read_text(encoding="utf-8"))
    return config


def python_regex(js_regex: str) -> str:
    """Renovate writes named groups the JavaScript way, `(?<name>...)`; Python's re wants `(?P<name>...)`."""
    return re.sub(r"\(\?<(?=[A-Za-z_])", "(?P<", js_regex)


def slash_regex(pattern: str) -> str:
    """A Renovate pattern written `/regex/` (the other form is a glob, which this config does not use)."""
    assert pattern.startswith("/") and pattern.endswith("/"), f"{pattern!r} is not a /regex/ pattern"
    return pattern[1:-1]


def image_manager() -> dict[str, Any]:
    managers: list[dict[str, Any]] = renovate_config()["customManagers"]
    [manager] = [m for m in managers if m.get("datasourceTemplate") == "docker"]
    return manager


def package_rule(package: str) -> dict[str, Any]:
    rules: list[dict[str, Any]] = renovate_config()["packageRules"]
    [rule] = [r for r in rules if package in r.get("matchPackageNames", [])]
    return rule


def managed_files() -> list[Path]:
    patterns = [re.compile(slash_regex(p)) for p in image_manager()["managerFilePatterns"]]
    files = sorted(CONFIG_DIR.glob("*.py"))
    return [f for f in files if any(p.search(f.relative_to(ROOT).as_posix()) for p in patterns)]


def found_references(pattern: re.Pattern[str]) -> list[str]:
    references = []
    for path in managed_files():
        for match in pattern.finditer(path.read_text(encoding="utf-8")):
            digest = match["currentDigest"]
            references.append(f"{match['depName']}:{match['currentValue']}" + (f"@{digest}" if digest else ""))
    return references


def run_validator(directory: Path) -> subprocess.CompletedProcess[str]:
    node = find_tool("node")
    if not VALIDATOR.exists() or node is None:
        message = f"renovate is not installed in {VALIDATOR.parents[2].relative_to(ROOT)} (scripts/test installs it with npm)"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    # --no-global: a file named on the command line is otherwise validated as self-hosted (global) configuration
    return subprocess.run(
        [str(VALIDATOR), "--strict", "--no-global", "renovate.json"],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_renovate_validator_accepts_the_config_strictly() -> None:
    result = run_validator(ROOT)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Validating renovate.json as repo config" in output
    assert "Config validated successfully" in output


@pytest.mark.parametrize(
    ("config", "why"),
    [
        ({"packageRulez": []}, "an unknown option"),
        ({"customManagers": [{"customType": "regex", "fileMatch": ["^x$"], "matchStrings": ["(?<currentValue>x)"],
                              "datasourceTemplate": "docker"}]}, "fileMatch, which needs a migration"),
    ],
    ids=["unknown-option", "needs-migration"],
)
def test_renovate_validator_rejects_a_bad_config(tmp_path: Path, config: dict[str, Any], why: str) -> None:
    (tmp_path / "renovate.json").write_text(json.dumps(config), encoding="utf-8")
    result = run_validator(tmp_path)
    assert result.returncode != 0, f"the validator accepted {why}: {result.stdout}"


def test_image_manager_finds_exactly_the_pinned_images() -> None:
    [match_string] = image_manager()["matchStrings"]
    found = found_references(re.compile(python_regex(match_string)))
    assert sorted(found) == sorted(pin.reference for pin in IMAGE_PINS)


def test_image_manager_regex_is_valid_re2_as_renovate_runs_it() -> None:
    [match_string] = image_manager()["matchStrings"]
    pattern = re2.compile(python_regex(match_string))
    assert sorted(found_references(pattern)) == sorted(pin.reference for pin in IMAGE_PINS)


def test_image_manager_reads_only_the_config_folder() -> None:
    assert [path.name for path in managed_files()] == sorted(path.name for path in CONFIG_DIR.glob("*.py"))
    pattern = re.compile(slash_regex(image_manager()["managerFilePatterns"][0]))
    assert not pattern.search("infra/storage.py") and not pattern.search("tests/unit/test_image_pins.py")


def test_hash_locks_and_pyproject_have_their_managers() -> None:
    config = renovate_config()
    locks = ["requirements.lock", "requirements-test.lock", "scripts/opscli/requirements.lock"]
    for lock in locks:
        assert (ROOT / lock).exists(), lock
        assert "--hash=sha256:" in (ROOT / lock).read_text(encoding="utf-8"), f"{lock} has no hashes"
        patterns = [re.compile(slash_regex(p)) for p in config["pip_requirements"]["managerFilePatterns"]]
        assert any(p.search(lock) for p in patterns), f"pip_requirements does not read {lock}"
    assert re.compile(slash_regex(config["pep621"]["managerFilePatterns"][0])).search("pyproject.toml")


def test_postgres_never_moves_to_a_new_major() -> None:
    rule = package_rule("postgres")
    assert rule["matchUpdateTypes"] == ["major"] and rule["enabled"] is False


def test_nginx_stays_on_stable_lines() -> None:
    allowed = re.compile(slash_regex(package_rule("nginx")["allowedVersions"]))
    assert allowed.search("1.30.4-alpine") and allowed.search("1.32.0-alpine")
    assert not allowed.search("1.31.2-alpine") and not allowed.search("1.30.4-alpine-slim")


def test_minio_images_follow_release_timestamps_only() -> None:
    rule = package_rule(MINIO.reference.split(":", 1)[0])
    assert "quay.io/minio/minio" in rule["matchPackageNames"]
    versioning = rule["versioning"]
    assert versioning.startswith("regex:")
    tag = re.compile(python_regex(versioning.removeprefix("regex:")))
    release = MINIO.reference.split(":", 1)[1]
    match = tag.fullmatch(release)
    assert match is not None and (match["major"], match["minor"], match["patch"]) == ("2026", "09", "16")
    for variant in (f"{release}-distroless", f"{release}-amd64", "latest", "RELEASE.2025-09-07T16-13-09Z.hotfix.7aa24e772"):
        assert tag.fullmatch(variant) is None, variant
    re2.compile(python_regex(versioning.removeprefix("regex:")))
