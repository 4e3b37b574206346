"""Failover by the exported quorum table: stop nodes one by one, check reads, writes and health at each step.

Every node stopped here is started again in a `finally` (NodeOutage), also on a failed check,
Ctrl-C or SIGTERM; afterwards the cluster must be healthy again within a bounded time and every
object written before and during the outage must read back intact.
"""

from __future__ import annotations

import hashlib

import pytest
import requests
from minio import Minio
from minio.error import S3Error

from tests.smoke import live
from tests.smoke.stack import NodeOutage, StackOutputs, mismatch, wait_for

pytestmark = pytest.mark.smoke

SETTLE_TIMEOUT_SECONDS = 120
RECOVERY_TIMEOUT_SECONDS = 300
ACCEPTED_WRITE_BYTES = 256 * 1024 + 3


def health(http: requests.Session, s3: str) -> tuple[int | str, int | str]:
    return live.status_of(http, f"{s3}/minio/health/cluster"), live.status_of(http, f"{s3}/minio/health/cluster/read")


def wait_for_health(http: requests.Session, stack: StackOutputs, expected: tuple[int, int], situation: str, timeout: float) -> None:
    wait_for(
        lambda: health(http, stack.endpoint("s3")),
        lambda seen: seen == expected,
        what=f"(/minio/health/cluster, /cluster/read) through the proxy with {situation}",
        expected=str(expected),
        timeout=timeout,
        interval=3,
    )


def digest_of(client: Minio, bucket: str, key: str) -> str:
    response = client.get_object(bucket, key)
    try:
        return hashlib.sha256(response.read()).hexdigest()
    finally:
        response.close()
        response.release_conn()


def test_node_loss_follows_the_exported_quorum_table(
    disruptive: None, stack: StackOutputs, http: requests.Session, tls_verify: bool | str, scratch_bucket: str
) -> None:
    stages = stack.layout.failover_stages()
    if not stages:
        pytest.skip(f"the layout's table tolerates no node loss: {stack.layout.node_loss}")
    wait_for_health(http, stack, (200, 200), "every node up (before stopping any)", SETTLE_TIMEOUT_SECONDS)
    # SDK retries off: a 503 SlowDown must reach the test as MinIO sent it
    client = live.s3_client(
        stack.endpoint("s3"), tls_verify,
        access_key=stack.value("minioRootUser"), secret_key=stack.value("minioRootPassword"), retries=False,
    )
    written = {"smoke/failover/before.bin": live.put_random(client, scratch_bucket, "smoke/failover/before.bin", ACCEPTED_WRITE_BYTES)}

    with NodeOutage.from_environment() as outage:
        for stage in stages:
            outage.stop(live.DockerContainer.of(stack.node(stage.stop_node)))
            situation = stage.describe()
            wait_for_health(http, stack, (stage.cluster_status, stage.cluster_read_status), situation, SETTLE_TIMEOUT_SECONDS)
            for key, digest in written.items():
                assert digest_of(client, scratch_bucket, key) == digest, f"{key} reads back differently with {situation}"
            key = f"smoke/failover/{stage.nodes_down}-down.bin"
            if stage.writes:
                written[key] = live.put_random(client, scratch_bucket, key, ACCEPTED_WRITE_BYTES)
            else:
                with pytest.raises(S3Error) as refused:
                    live.put_write_probe(client, scratch_bucket, key)
                status = refused.value.response.status if refused.value.response is not None else None
                assert status == 503, mismatch(f"a write with {situation}", "503 (SlowDownWrite)", f"{status} {refused.value.code}")

    wait_for_health(http, stack, (200, 200), "every node started again", RECOVERY_TIMEOUT_SECONDS)
    wait_for(
        lambda: {node.name: live.inspect_container(node)["State"].get("Health", {}).get("Status") for node in stack.minio_nodes()},
        lambda states: set(states.values()) == {"healthy"},
        what="MinIO node containers after the restart",
        expected="every one healthy",
        timeout=RECOVERY_TIMEOUT_SECONDS,
        interval=5,
    )
    # the proxy's answer comes from one node; a restarted one refuses S3 requests until its own IAM is up
    nodes = {node.name: node for node in stack.minio_nodes()}
    live.wait_until_every_node_healthy(list(nodes), timeout=RECOVERY_TIMEOUT_SECONDS, probe=lambda name: live.node_health(nodes[name]))
    changed = [key for key, digest in written.items() if digest_of(client, scratch_bucket, key) != digest]
    assert not changed, mismatch("objects written before and during the outage", "all intact", f"{changed} differ")
