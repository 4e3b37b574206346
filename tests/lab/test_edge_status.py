"""The edge proxy's status listener in real nginx: stub_status for the exporter's address, nothing for anyone else.

Deployed, the listener admits monitoring-net but its gateway (the Docker host); here the lab admits
one loopback address in its place, through the same template. Real nginx (Debian's) runs the rendered
configuration as tests/lab/proxy_lab.py does.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest

from infra.__main__ import load_stack
from infra.edge import ProxyRuntime
from infra.monitoring.metrics import EDGE_STATUS_PORT
from tests.lab.proxy_lab import PROXY_ADDRESS, LabProxy, all_upstreams_at, request_from

pytestmark = pytest.mark.lab

EXPORTER_ADDRESS = "127.0.10.2"
OTHER_ADDRESS = "127.0.10.3"
# nginx does not connect upstreams until a request needs them: none here does
NO_UPSTREAM = "127.0.10.9:9"
# what nginx-prometheus-exporter parses (client/nginx.go parseStubStats): four lines in this shape
STUB_STATUS = re.compile(
    r"Active connections: (\d+) \nserver accepts handled requests\n (\d+) (\d+) (\d+) \n"
    r"Reading: (\d+) Writing: (\d+) Waiting: (\d+) \n"
)


@dataclass
class StatusLabProxy(LabProxy):
    """The lab proxy with the status listener admitting EXPORTER_ADDRESS only."""

    @property
    def runtime(self) -> ProxyRuntime:
        return replace(super().runtime, status_allow=(EXPORTER_ADDRESS,))


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StatusLabProxy]:
    running = StatusLabProxy(tmp_path_factory.mktemp("nginx-status"), load_stack("dev", None), all_upstreams_at(NO_UPSTREAM))
    running.start()
    try:
        yield running
    finally:
        running.stop()


def status_url() -> str:
    return f"http://{PROXY_ADDRESS}:{EDGE_STATUS_PORT}/stub_status"


def test_the_exporter_reads_stub_status_in_the_format_it_parses(proxy: StatusLabProxy) -> None:
    first = request_from(EXPORTER_ADDRESS, status_url())
    assert first.status == 200
    parsed = STUB_STATUS.fullmatch(first.body.decode())
    assert parsed, first.body
    second = STUB_STATUS.fullmatch(request_from(EXPORTER_ADDRESS, status_url()).body.decode())
    assert second
    # requests counts every request, the status page's own included
    assert int(second.group(4)) > int(parsed.group(4))


def test_every_other_client_and_every_other_path_is_refused(proxy: StatusLabProxy) -> None:
    assert request_from(OTHER_ADDRESS, status_url()).status == 403
    assert request_from(EXPORTER_ADDRESS, f"http://{PROXY_ADDRESS}:{EDGE_STATUS_PORT}/").status == 404
    assert request_from(EXPORTER_ADDRESS, f"http://{PROXY_ADDRESS}:{EDGE_STATUS_PORT}/minio-console/").status == 404

