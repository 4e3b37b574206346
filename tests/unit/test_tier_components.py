"""Every tier follows Pulumi's component convention: `(name, args: XArgs, opts)`, dependencies through opts."""

from __future__ import annotations

import inspect
import typing

import pytest

from infra.backups import ScheduledBackup
from infra.edge import EdgeProxy
from infra.identity import Identity
from infra.monitoring import Monitoring
from infra.storage import MinioCluster
from infra.tier import Tier, TierArgs
from tests.unit.pulumi_harness import deploy

TIERS = [MinioCluster, Identity, EdgeProxy, Monitoring, ScheduledBackup]
CONTAINER = "docker:index/container:Container"


@pytest.mark.parametrize("tier", TIERS, ids=lambda tier: tier.__name__)
def test_each_tier_takes_a_name_its_own_typed_arguments_and_options(tier: type[Tier]) -> None:
    assert issubclass(tier, Tier)
    parameters = list(inspect.signature(tier.__init__).parameters)
    assert parameters == ["self", "name", "args", "opts"]
    args_type = typing.get_type_hints(tier.__init__)["args"]
    assert args_type.__name__ == f"{tier.__name__}Args" and issubclass(args_type, TierArgs)


def test_what_a_tier_waits_for_through_opts_reaches_each_of_its_containers() -> None:
    deployment = deploy("dev")
    backup = deployment.named("backup", CONTAINER)
    waited = {urn.rsplit("::", 1)[1] for urn in backup.dependencies}
    assert {"postgres", "minio1", "minio2", "minio3", "minio4"} <= waited
    for node in ("minio1", "minio2", "minio3", "minio4"):
        assert any(urn.endswith("::keycloak") for urn in deployment.named(node, CONTAINER).dependencies)
