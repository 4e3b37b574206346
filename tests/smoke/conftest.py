"""Smoke tests against a deployed stack; without one, every test here skips with NO_DEPLOYMENT.

The deployment comes from the environment that scripts/smoke sets (see tests/smoke/stack.py):
SMOKE_OUTPUTS (a file of `pulumi stack output --json --show-secrets`) or SMOKE_STACK (read with
the Pulumi CLI). Tests run in a fixed order: the non-disruptive checks first, then the ones
that stop nodes.
"""

from __future__ import annotations

import os
import secrets
import warnings
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import certifi
import pytest
import requests
from minio import Minio

from tests.conftest import ROOT
from tests.smoke import live
from tests.smoke.stack import (
    ENV_CA_BUNDLE,
    ENV_STACK,
    EDGE_PROXY,
    IN_STACK_PROBE,
    NO_DEPLOYMENT,
    OutputsError,
    StackOutputs,
    deployment_from_environment,
    describe_seen,
    disruption_policy,
    is_self_signed,
)

SMOKE_DIR = Path(__file__).resolve().parent
# health first, then data, identity and logs; the checks that stop nodes last
ORDER = (
    "test_health", "test_data_path", "test_identity", "test_console_browser", "test_monitoring", "test_failover", "test_alerts"
)
DEPLOYMENT_KEY = pytest.StashKey[StackOutputs | None]()


def _is_smoke(item: pytest.Item) -> bool:
    return SMOKE_DIR in Path(str(item.path)).resolve().parents


def _rank(item: pytest.Item) -> int:
    module = Path(str(item.path)).stem
    return ORDER.index(module) if module in ORDER else len(ORDER)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    slots = [index for index, item in enumerate(items) if _is_smoke(item)]
    if not slots:
        return
    try:
        deployment = deployment_from_environment()
    except OutputsError as error:
        # pointed at a deployment that cannot be read: stop before any check, saying why
        raise pytest.UsageError(str(error)) from None
    config.stash[DEPLOYMENT_KEY] = deployment
    smoke = sorted((items[index] for index in slots), key=_rank)  # stable: file order within a module
    for index, item in zip(slots, smoke, strict=True):
        items[index] = item
        if deployment is None:
            item.add_marker(pytest.mark.skip(reason=NO_DEPLOYMENT))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Every skip for want of a deployment is reported at one place, so the summary says it once."""
    report: pytest.TestReport = yield
    if report.skipped and isinstance(report.longrepr, tuple) and report.longrepr[2].endswith(NO_DEPLOYMENT):
        report.longrepr = (str(SMOKE_DIR), None, NO_DEPLOYMENT)
    return report


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest) -> StackOutputs:
    deployment = request.config.stash.get(DEPLOYMENT_KEY, None)
    if deployment is None:
        pytest.skip(NO_DEPLOYMENT)
    return deployment


@pytest.fixture(scope="session")
def stack_config(stack: StackOutputs) -> Any:
    """The deployed stack's configuration (infra.config.StackConfig), from its Pulumi.<stack>.yaml."""
    from infra.config import read_stack_file, split_config
    from infra.secrets import SECRET_CONFIG_KEYS

    name = os.environ.get(ENV_STACK) or stack.environment
    path = ROOT / f"Pulumi.{name}.yaml"
    if not path.is_file():
        pytest.skip(f"no stack file {path.name}: name the stack (scripts/smoke <stack>) for the checks that read its configuration")
    values, encrypted = read_stack_file(path)
    config, _ = split_config(name, values, SECRET_CONFIG_KEYS, encrypted)
    return config


@pytest.fixture(scope="session")
def tls_verify(stack: StackOutputs, tmp_path_factory: pytest.TempPathFactory) -> bool | str:
    """What to trust on the stack's TLS endpoints.

    In order: a bundle the operator names (--ca-bundle), the certificate the stack exports, or
    the system's store plus the proxy's own certificate when that one signed itself (dev and
    staging); read from inside the proxy container, so it is the one the proxy really serves.
    """
    if os.environ.get(ENV_CA_BUNDLE):
        return os.environ[ENV_CA_BUNDLE]
    certificate = stack.optional("tlsCertificate")
    if certificate is None and any(url.startswith("https://") for url in stack.endpoints.values()):
        from infra.edge import TLS_CERTIFICATE_FILE

        served = live.in_container(stack.container(EDGE_PROXY).name).run("cat", TLS_CERTIFICATE_FILE)
        certificate = served.stdout if served.rc == 0 and "BEGIN CERTIFICATE" in served.stdout else None
    if certificate is None or not is_self_signed(certificate):
        return True
    bundle = tmp_path_factory.mktemp("tls") / "trusted.pem"
    bundle.write_text(Path(certifi.where()).read_text() + "\n" + certificate)
    return str(bundle)


@pytest.fixture(scope="session")
def http(tls_verify: bool | str) -> Iterator[requests.Session]:
    with live.http_session(tls_verify) as session:
        yield session


@pytest.fixture(scope="session")
def root_s3(stack: StackOutputs, tls_verify: bool | str) -> Minio:
    """S3 client with the root credentials, through the proxy's S3 endpoint."""
    return live.s3_client(
        stack.endpoint("s3"), tls_verify, access_key=stack.value("minioRootUser"), secret_key=stack.value("minioRootPassword")
    )


@pytest.fixture(scope="session")
def in_stack(stack: StackOutputs) -> live.InStackHttp:
    """HTTP from inside the stack, for the monitoring services that publish no port."""
    return live.InStackHttp(stack.container(IN_STACK_PROBE).name)


@pytest.fixture(scope="session")
def scratch_bucket(root_s3: Minio) -> Iterator[str]:
    """A bucket of the suite's own, emptied and removed at the end (also after failures)."""
    name = f"smoke-{secrets.token_hex(6)}"
    root_s3.make_bucket(name)
    try:
        yield name
    finally:
        try:
            for item in root_s3.list_objects(name, recursive=True, include_version=True):
                root_s3.remove_object(name, item.object_name or "", version_id=item.version_id)
            root_s3.remove_bucket(name)
        except Exception as error:  # noqa: BLE001 - cleanup must not hide the checks' own results
            warnings.warn(f"could not remove the smoke tests' bucket {name} ({describe_seen(error)}): remove it by hand", stacklevel=1)


@pytest.fixture
def disruptive(stack: StackOutputs) -> None:
    """Skips a check that stops containers unless the operator allows it (--no-failover, --yes-on-prod)."""
    policy = disruption_policy(stack)
    if not policy.allowed:
        pytest.skip(policy.reason)
