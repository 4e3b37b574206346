"""The smoke suite offline: it collects and skips without a deployment, and its pure logic is right.

Expectations come from the outputs the program exports (ClusterLayout.as_dict(), as
infra/program.py exports it), so the layouts here are built the same way. Containers are
stood in for by FakeContainer, a stand-in that only records stop and start calls; the docker CLI,
where the Docker host a call goes to matters, by RecordingDockerCli.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import re2

from infra.quorum import ClusterLayout
from tests.conftest import ROOT
from tests.smoke import live
from tests.smoke import stack as smoke
from tests.smoke.stack import (
    NO_DEPLOYMENT,
    FailoverStage,
    NodeOutage,
    OutputsError,
    RestartFailed,
    WaitTimeout,
    parse_outputs,
    wait_for,
)

SMOKE_ENV = [smoke.ENV_OUTPUTS, smoke.ENV_STACK, smoke.ENV_FAILOVER, smoke.ENV_PROD_CONSENT, smoke.ENV_LEDGER, smoke.ENV_CA_BUNDLE]


def outputs_for(
    nodes: int, drives: int, parity: int | None = None, environment: str = "dev", pools: tuple[tuple[int, int], ...] = (), **extra: Any
) -> dict[str, Any]:
    """Outputs shaped as `pulumi stack output --json --show-secrets` prints them for this layout."""
    name = f"minio-{environment}"
    layout = ClusterLayout.plan([(nodes, drives), *pools], parity)
    containers = {
        f"minio{index}": {"name": f"{name}-minio{index}", "networks": [f"{name}-storage-net"]}
        for index in range(1, layout.total_nodes + 1)
    }
    containers["prometheus"] = {"name": f"{name}-prometheus", "networks": [f"{name}-monitoring-net", f"{name}-storage-net"]}
    return {
        "environment": environment,
        "name": name,
        "layout": layout.as_dict(),
        "containers": containers,
        "networks": {segment: f"{name}-{segment}-net" for segment in ("storage", "monitoring", "database", "edge")},
        "endpoints": {"s3": "https://localhost:9443", "prometheusInternal": "http://prometheus:9090"},
        "minioRootUser": "rootuser0123456789ab",
        "minioRootPassword": "Secret0123456789",
        **extra,
    }


def table(nodes: int, drives: int, parity: int | None = None) -> list[tuple[int, bool, bool]]:
    layout = parse_outputs(outputs_for(nodes, drives, parity)).layout
    return [(row.nodes_down, row.reads, row.writes) for row in layout.node_loss]


def stages(nodes: int, drives: int, parity: int | None = None) -> list[tuple[int, int, bool, bool, int, int]]:
    layout = parse_outputs(outputs_for(nodes, drives, parity)).layout
    return [
        (stage.nodes_down, stage.stop_node, stage.reads, stage.writes, stage.cluster_status, stage.cluster_read_status)
        for stage in layout.failover_stages()
    ]


# --- the suite without a deployment ---------------------------------------------------------


def run_pytest(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items() if key not in SMOKE_ENV}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=ROOT, env={**clean, **(env or {})}, capture_output=True, text=True, timeout=120,
    )


def test_smoke_suite_collects_and_skips_every_test_with_one_reason_without_a_deployment() -> None:
    result = run_pytest("tests/smoke", "-rs", "-q")
    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    skipped = re.fullmatch(r"(\d+) skipped in [\d.]+s", summary)
    assert skipped and int(skipped.group(1)) >= 15, summary
    reasons = {line.split(": ", 1)[1] for line in result.stdout.splitlines() if line.startswith("SKIPPED")}
    assert reasons == {NO_DEPLOYMENT}


def test_smoke_suite_runs_health_first_and_the_checks_that_stop_nodes_last() -> None:
    result = run_pytest("tests/smoke", "--collect-only", "-q")
    modules = []
    for line in result.stdout.splitlines():
        if "::" in line and (module := Path(line.split("::")[0]).stem) not in modules:
            modules.append(module)
    assert modules == [
        "test_health", "test_data_path", "test_identity", "test_console_browser", "test_monitoring", "test_failover", "test_alerts"
    ]


def test_outputs_read_without_show_secrets_stop_the_run_saying_so(tmp_path: Path) -> None:
    hidden = outputs_for(4, 2, minioRootPassword="[secret]")
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(hidden))
    result = run_pytest("tests/smoke", "-q", env={smoke.ENV_OUTPUTS: str(path)})
    assert result.returncode == 4, result.stdout + result.stderr
    assert "--show-secrets" in result.stderr and "minioRootPassword" in result.stderr


def test_every_smoke_test_is_marked_smoke() -> None:
    unmarked = run_pytest("tests/smoke", "--collect-only", "-q", "-m", "not smoke")
    assert "no tests collected" in unmarked.stdout or " deselected" in unmarked.stdout, unmarked.stdout
    assert "::" not in unmarked.stdout


# --- expectations from the exported quorum table ---------------------------------------------

FACTS_TABLE = [(0, True, True), (1, True, True), (2, True, False), (3, False, False), (4, False, False)]


def test_a_second_pool_adds_its_nodes_and_the_largest_quorum_is_the_one_minio_reports() -> None:
    outputs = outputs_for(4, 2, pools=((4, 4),))
    stack = parse_outputs(outputs)
    assert stack.layout.total_nodes == 8 and [node.key for node in stack.minio_nodes()][-1] == "minio8"
    # pool 1: sets of 8 at EC:4 (write 5, read 4); pool 2: one set of 16 at EC:4 (write 12, read 12)
    assert stack.layout.reported_quorums == (12, 12)
    assert (stack.layout.write_quorum, stack.layout.read_quorum) == (5, 4), "the failover table stays the first pool's"
    del outputs["containers"]["minio7"]
    with pytest.raises(OutputsError, match="every MinIO node of the layout \\(8\\).*minio7"):
        parse_outputs(outputs)


@pytest.mark.parametrize(("nodes", "drives"), [(4, 1), (4, 2)])
def test_reference_layouts_give_the_facts_table(nodes: int, drives: int) -> None:
    assert table(nodes, drives) == FACTS_TABLE


@pytest.mark.parametrize(("nodes", "drives"), [(4, 1), (4, 2)])
def test_reference_layouts_stop_one_node_for_writes_then_a_second_for_reads_only(nodes: int, drives: int) -> None:
    assert stages(nodes, drives) == [(1, 1, True, True, 200, 200), (2, 2, True, False, 503, 200)]


def test_8x1_keeps_writes_to_three_nodes_down_and_stops_a_fourth_for_reads_only() -> None:
    assert stages(8, 1) == [
        (1, 1, True, True, 200, 200),
        (2, 2, True, True, 200, 200),
        (3, 3, True, True, 200, 200),
        (4, 4, True, False, 503, 200),
    ]


def test_6x2_with_parity_6_loses_writes_at_three_nodes_down() -> None:
    assert table(6, 2, 6)[:5] == [(0, True, True), (1, True, True), (2, True, True), (3, True, False), (4, False, False)]
    assert [stage[:4] for stage in stages(6, 2, 6)] == [(1, 1, True, True), (2, 2, True, True), (3, 3, True, False)]


def test_6x2_default_parity_has_no_reads_only_row_so_no_node_is_stopped_past_write_quorum() -> None:
    # EC:4 over 12 drives: read and write quorum are both 8, so the third node takes both away
    assert table(6, 2)[3] == (3, False, False)
    assert [stage[:4] for stage in stages(6, 2)] == [(1, 1, True, True), (2, 2, True, True)]


def test_stages_never_stop_a_node_that_takes_reads_away() -> None:
    for nodes, drives, parity in [(4, 1, None), (4, 2, None), (8, 1, None), (6, 2, 6), (6, 2, None), (16, 1, None), (4, 4, None)]:
        layout = parse_outputs(outputs_for(nodes, drives, parity)).layout
        for stage in layout.failover_stages():
            assert layout.expectation(stage.nodes_down).reads, (nodes, drives, parity, stage)
        assert len(layout.failover_stages()) == layout.nodes_tolerated(writes=False)


def test_the_table_is_read_from_the_outputs_not_recomputed() -> None:
    # an exported table that differs from MinIO's arithmetic is followed as exported
    outputs = outputs_for(4, 2)
    outputs["layout"]["nodeLoss"][2]["reads"] = False
    outputs["layout"]["nodeLoss"][2]["writes"] = False
    assert [stage.nodes_down for stage in parse_outputs(outputs).layout.failover_stages()] == [1]


def test_stage_describes_itself_for_failure_messages() -> None:
    assert FailoverStage(2, 2, True, False).describe() == "nodes 1-2 down (reads only)"
    assert FailoverStage(1, 1, True, True).describe() == "node 1 down (reads and writes)"


# --- parsing the outputs ---------------------------------------------------------------------


def test_outputs_of_the_program_under_mocks_parse() -> None:
    from tests.unit.pulumi_harness import deploy

    exported = json.loads(json.dumps(deploy("dev").outputs))
    stack = parse_outputs(exported, "dev under mocks")
    assert [node.key for node in stack.minio_nodes()] == [f"minio{index}" for index in range(1, stack.layout.nodes + 1)]
    assert stack.minio_nodes()[0].networks == {exported["networks"]["storage"]}
    assert stack.endpoint("s3") == exported["endpoints"]["s3"].rstrip("/")
    assert stack.value("minioRootPassword") == exported["minioRootPassword"]


def test_parse_lists_every_problem_with_expected_and_seen() -> None:
    broken = outputs_for(4, 2, minioRootUser="[secret]")
    del broken["containers"]["minio3"]
    del broken["layout"]["writeQuorum"]
    broken["endpoints"] = {}
    with pytest.raises(OutputsError) as error:
        parse_outputs(broken, "outputs.json")
    message = str(error.value)
    assert message.startswith("stack outputs from outputs.json are not usable:")
    assert "[secret] at minioRootUser" in message and "--show-secrets" in message
    assert "layout.writeQuorum: expected a positive integer, seen None" in message
    assert "endpoints: expected an object with at least 's3'" in message
    assert len(error.value.problems) == 3  # minio3's absence is judged only once the layout parses


def test_missing_node_container_is_named() -> None:
    outputs = outputs_for(4, 2)
    del outputs["containers"]["minio3"]
    with pytest.raises(OutputsError, match=r"containers: expected every MinIO node of the layout \(4\), seen no entry for minio3"):
        parse_outputs(outputs)


def test_node_loss_rows_out_of_order_are_refused() -> None:
    outputs = outputs_for(4, 1)
    outputs["layout"]["nodeLoss"].reverse()
    with pytest.raises(OutputsError, match=r"layout.nodeLoss\[0\]: expected \{nodesDown: 0"):
        parse_outputs(outputs)


def test_missing_endpoint_or_output_fails_naming_the_key() -> None:
    stack = parse_outputs(outputs_for(4, 2))
    with pytest.raises(AssertionError, match=r"expected an endpoint 'grafana', seen \['prometheusInternal', 's3'\]"):
        stack.endpoint("grafana")
    with pytest.raises(AssertionError, match="expected a non-empty output 'keycloakBootstrapPassword'"):
        stack.value("keycloakBootstrapPassword")


class FakePulumi:
    """Stand-in for subprocess.run: answers like the Pulumi CLI, records the command."""

    def __init__(self, returncode: int = 0, stdout: str = "", stderr: str = "", missing: bool = False) -> None:
        self.result = subprocess.CompletedProcess([], returncode, stdout, stderr)
        self.missing = missing
        self.commands: list[list[str]] = []

    def __call__(self, command: list[str], **options: Any) -> subprocess.CompletedProcess[str]:
        self.commands.append(command)
        assert options["timeout"] > 0
        if self.missing:
            raise FileNotFoundError(command[0])
        return self.result


def test_outputs_are_read_with_show_secrets_for_the_named_stack() -> None:
    fake = FakePulumi(stdout=json.dumps(outputs_for(4, 2)))
    assert smoke.read_pulumi_outputs("staging", run=fake).layout.nodes == 4
    assert fake.commands == [["pulumi", "stack", "output", "--json", "--show-secrets", "--stack", "staging"]]


def test_pulumi_failures_are_one_clear_problem() -> None:
    with pytest.raises(OutputsError, match="exit status 255: error: no stack named 'qa' found"):
        smoke.read_pulumi_outputs("qa", run=FakePulumi(255, stderr="warning: x\nerror: no stack named 'qa' found\n"))
    with pytest.raises(OutputsError, match="the Pulumi CLI is not on PATH"):
        smoke.read_pulumi_outputs("qa", run=FakePulumi(missing=True))


def test_deployment_comes_from_an_outputs_file_or_is_absent(tmp_path: Path) -> None:
    assert smoke.deployment_from_environment({}) is None
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(outputs_for(8, 1)))
    assert smoke.deployment_from_environment({smoke.ENV_OUTPUTS: str(path)}).layout.nodes == 8  # type: ignore[union-attr]
    path.write_text("{not json")
    with pytest.raises(OutputsError, match="not JSON"):
        smoke.deployment_from_environment({smoke.ENV_OUTPUTS: str(path)})


# --- consent for disruptive checks -----------------------------------------------------------


def test_disruptive_checks_run_on_dev_unless_turned_off() -> None:
    dev = parse_outputs(outputs_for(4, 2))
    assert smoke.disruption_policy(dev, {}).allowed
    off = smoke.disruption_policy(dev, {smoke.ENV_FAILOVER: "off"})
    assert not off.allowed and "--no-failover" in off.reason


def test_prod_needs_explicit_consent_for_disruptive_checks() -> None:
    prod = parse_outputs(outputs_for(4, 2, environment="prod"))
    refused = smoke.disruption_policy(prod, {})
    assert not refused.allowed and "--yes-on-prod" in refused.reason and "minio-prod" in refused.reason
    assert smoke.disruption_policy(prod, {smoke.ENV_PROD_CONSENT: "yes"}).allowed
    assert not smoke.disruption_policy(prod, {smoke.ENV_PROD_CONSENT: "yes", smoke.ENV_FAILOVER: "off"}).allowed


# --- bounded waiting -------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_wait_returns_the_first_accepted_answer() -> None:
    answers = iter([503, 503, 200])
    clock = FakeClock()
    assert wait_for(lambda: next(answers), lambda s: s == 200, what="x", expected="200", timeout=30, interval=2, clock=clock, sleep=clock.sleep) == 200
    assert clock.sleeps == [2, 2]


def test_wait_is_bounded_in_time_and_attempts_and_says_expected_and_seen() -> None:
    clock = FakeClock()
    calls = []

    def probe() -> int:
        calls.append(clock.now)
        clock.now += 0.5  # each probe takes time too
        return 503

    with pytest.raises(WaitTimeout) as error:
        wait_for(probe, lambda s: s == 200, what="/minio/health/cluster", expected="200", timeout=10, interval=3, clock=clock, sleep=clock.sleep)
    assert clock.now <= 10 + 0.5
    assert len(calls) <= 10 // 3 + 2
    assert str(error.value).startswith("/minio/health/cluster: expected 200 within 10s, seen 503 (last of ")
    assert isinstance(error.value, AssertionError)  # reported by pytest as a failed check


def test_wait_reports_a_probe_exception_as_what_was_seen() -> None:
    clock = FakeClock()

    def probe() -> int:
        raise ConnectionError("connection refused")

    with pytest.raises(WaitTimeout, match="seen ConnectionError: connection refused"):
        wait_for(probe, bool, what="Loki", expected="ready", timeout=4, interval=2, clock=clock, sleep=clock.sleep)


def test_wait_lets_an_interrupt_through_at_once() -> None:
    clock = FakeClock()

    def probe() -> int:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        wait_for(probe, bool, what="x", expected="y", timeout=100, interval=1, clock=clock, sleep=clock.sleep)
    assert clock.sleeps == []


def test_wait_refuses_an_unbounded_wait() -> None:
    with pytest.raises(ValueError):
        wait_for(lambda: 1, bool, what="x", expected="y", timeout=0)


def test_failure_messages_say_expected_then_seen() -> None:
    assert smoke.mismatch("a write with nodes 1-2 down", "503", "200") == "a write with nodes 1-2 down: expected 503, seen 200"


# --- restarting what was stopped -------------------------------------------------------------


class FakeContainer:
    """Stand-in for a stack container: records stop and start, can be told to fail or to take a while to run again."""

    def __init__(
        self, name: str, journal: list[str], fail_stop: bool = False, fail_start: bool = False, polls_until_running: int = 0
    ) -> None:
        self.name = name
        self.journal = journal
        self.fail_stop = fail_stop
        self.fail_start = fail_start
        self.polls_until_running = polls_until_running
        self.polls: list[str] = []
        """What the ledger said at each `is_running` poll (when a ledger is watched)."""
        self.ledger: Path | None = None
        self.running = True
        self.docker_host: str | None = None

    def is_running(self) -> bool:
        self.polls.append(self.ledger.read_text() if self.ledger else "")
        if self.polls_until_running > 0:
            self.polls_until_running -= 1
            return False
        return self.running

    def stop(self) -> None:
        self.journal.append(f"stop {self.name}")
        if self.fail_stop:
            raise RuntimeError("docker stop timed out")
        self.running = False

    def start(self) -> None:
        self.journal.append(f"start {self.name}")
        if self.fail_start:
            raise RuntimeError("no such container")
        self.running = True


@pytest.fixture
def journal() -> list[str]:
    return []


def quiet(message: str) -> None:
    pass


def test_stopped_containers_are_started_again_when_a_check_fails(journal: list[str]) -> None:
    nodes = [FakeContainer(f"minio{index}", journal) for index in (1, 2)]
    with pytest.raises(AssertionError, match="writes expected 503"):
        with NodeOutage(report=quiet) as outage:
            for node in nodes:
                outage.stop(node)
            raise AssertionError("writes expected 503")
    assert journal == ["stop minio1", "stop minio2", "start minio2", "start minio1"]
    assert all(node.running for node in nodes)


def test_stopped_containers_are_started_again_on_keyboard_interrupt(journal: list[str]) -> None:
    node = FakeContainer("minio1", journal)
    with pytest.raises(KeyboardInterrupt):
        with NodeOutage(report=quiet) as outage:
            outage.stop(node)
            raise KeyboardInterrupt
    assert node.running and journal == ["stop minio1", "start minio1"]


def test_sigterm_while_nodes_are_down_interrupts_and_restarts(journal: list[str]) -> None:
    node = FakeContainer("minio1", journal)
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with NodeOutage(report=quiet) as outage:
            outage.stop(node)
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler runs between bytecodes
                pass
    assert node.running
    assert signal.getsignal(signal.SIGTERM) is previous


def test_an_interrupt_during_the_restart_waits_until_every_container_runs(journal: list[str]) -> None:
    class InterruptedStart(FakeContainer):
        def start(self) -> None:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while restarting
            super().start()

    first, second = FakeContainer("minio1", journal), InterruptedStart("minio2", journal)
    with pytest.raises(KeyboardInterrupt):
        with NodeOutage(report=quiet) as outage:
            outage.stop(first)
            outage.stop(second)
    assert first.running and second.running
    assert journal[-2:] == ["start minio2", "start minio1"]


def test_a_stop_that_fails_half_way_still_gets_a_start(journal: list[str]) -> None:
    node = FakeContainer("minio1", journal, fail_stop=True)
    with pytest.raises(RuntimeError, match="docker stop timed out"):
        with NodeOutage(report=quiet) as outage:
            outage.stop(node)
    assert journal == ["stop minio1", "start minio1"]


def test_a_failed_start_does_not_keep_the_others_down_and_names_what_to_do(journal: list[str], tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    broken, fine = FakeContainer("minio1", journal, fail_start=True), FakeContainer("minio2", journal)
    with pytest.raises(RestartFailed) as error:
        with NodeOutage(ledger, report=quiet) as outage:
            outage.stop(broken)
            outage.stop(fine)
            assert ledger.read_text() == "minio1\nminio2\n"
    assert fine.running
    assert "minio1: RuntimeError: no such container" in str(error.value)
    assert "docker start minio1" in str(error.value)
    assert ledger.read_text() == "minio1\n"  # what scripts/smoke's exit trap will still try to start


def test_containers_left_down_on_node_hosts_are_named_with_the_host_to_start_them_on(journal: list[str]) -> None:
    first, second = FakeContainer("minio-dev-minio1", journal, fail_start=True), FakeContainer("minio-dev-minio2", journal, fail_start=True)
    first.docker_host, second.docker_host = "ssh://ops@node1", "ssh://ops@node2"
    with pytest.raises(RestartFailed) as error:
        with NodeOutage(report=quiet) as outage:
            outage.stop(first)
            outage.stop(second)
    assert str(error.value).endswith(
        "start them by hand: DOCKER_HOST=ssh://ops@node1 docker start minio-dev-minio1; "
        "DOCKER_HOST=ssh://ops@node2 docker start minio-dev-minio2"
    )


def test_ledger_is_empty_once_every_container_runs_again(journal: list[str], tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    with NodeOutage.from_environment({smoke.ENV_LEDGER: str(ledger)}) as outage:
        outage.report = quiet
        outage.stop(FakeContainer("minio1", journal))
        assert ledger.read_text() == "minio1\n"
    assert ledger.read_text() == ""


def test_ledger_keeps_a_container_until_it_reports_running_again(journal: list[str], tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    node = FakeContainer("minio1", journal, polls_until_running=2)
    node.ledger = ledger
    with NodeOutage(ledger, report=quiet, sleep=lambda seconds: None) as outage:
        outage.stop(node)
    assert node.polls == ["minio1\n", "minio1\n", "minio1\n"]  # listed at every poll, the last one included
    assert ledger.read_text() == ""


def test_a_container_that_never_runs_again_after_its_start_stays_on_the_ledger(journal: list[str], tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    node = FakeContainer("minio1", journal, polls_until_running=10**6)
    with pytest.raises(RestartFailed) as error:
        with NodeOutage(ledger, report=quiet, restart_timeout=1, poll_interval=0.25, sleep=lambda seconds: None) as outage:
            outage.stop(node)
    assert "minio1 after docker start: expected running again within 1s" in str(error.value)
    assert "docker start minio1" in str(error.value)
    assert ledger.read_text() == "minio1\n"


# --- keeping credentials out of failure messages -----------------------------------------------

ID_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJwb2xpY3kiOlsicmVhZHdyaXRlIl19.c2lnbmF0dXJlLW9mLXRoZS1rZXljbG9hay1rZXk"


@pytest.mark.parametrize(
    ("text", "secret", "kept"),
    [
        (
            f"https://s3.example.com/?Action=AssumeRoleWithWebIdentity&Version=2011-06-15&WebIdentityToken={ID_TOKEN} "
            "failed with HTTP status code 400",
            ID_TOKEN,
            "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&WebIdentityToken=[redacted] failed with HTTP status code 400",
        ),
        (
            "/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=rootuser%2F20260101%2Fus-east-1%2Fs3%2Faws4_request"
            "&X-Amz-Security-Token=c2Vzc2lvbg&X-Amz-Signature=9f2a6c0e1d",
            "9f2a6c0e1d",
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=[redacted]&X-Amz-Security-Token=[redacted]&X-Amz-Signature=[redacted]",
        ),
        ("302 https://console/oauth_callback?state=s1&session_state=x&code=6d1c-secret-code", "6d1c-secret-code", "state=s1&session_state=x&code=[redacted]"),
        ('{"access_token": "opaque-access", "token_type": "Bearer"}', "opaque-access", '{"access_token": "[redacted]", "token_type": "Bearer"}'),
        (f"id_token={ID_TOKEN}&refresh_token=r3fr3sh", "r3fr3sh", "id_token=[redacted]&refresh_token=[redacted]"),
        ("Authorization: AWS4-HMAC-SHA256 Credential=AK/x, SignedHeaders=host, Signature=ab12cd", "ab12cd", "SignedHeaders=host, Signature=[redacted]"),
        (f"a bare token {ID_TOKEN} in a message", ID_TOKEN, "a bare token [redacted] in a message"),
    ],
)
def test_redact_tokens_removes_credential_values_and_keeps_the_rest(text: str, secret: str, kept: str) -> None:
    redacted = smoke.redact_tokens(text)
    assert secret not in redacted and kept in redacted, redacted


def test_failure_messages_and_timed_out_waits_never_show_a_token() -> None:
    url = f"https://s3.example.com/?Action=AssumeRoleWithWebIdentity&WebIdentityToken={ID_TOKEN}"
    assert ID_TOKEN not in smoke.mismatch("AssumeRoleWithWebIdentity", "temporary credentials", ValueError(f"{url} failed"))
    clock = FakeClock()

    def refused() -> int:
        raise ValueError(f"{url} failed with HTTP status code 400")

    with pytest.raises(WaitTimeout) as error:
        wait_for(refused, bool, what="STS", expected="credentials", timeout=2, interval=1, clock=clock, sleep=clock.sleep)
    assert ID_TOKEN not in str(error.value) and "status code 400" in str(error.value)


# --- health of a node still starting ---------------------------------------------------------


def test_curl_health_answer_reads_what_a_starting_node_says() -> None:
    starting = "HTTP/1.1 503 Service Unavailable\r\nX-Minio-Server-Status: iam-offline\r\nContent-Length: 0\r\n\r\n"
    assert smoke.curl_health_answer(starting) == smoke.HealthAnswer(503, server_status="iam-offline")
    assert repr(smoke.curl_health_answer(starting)) == "503 (iam-offline)"
    uninitialised = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\n\r\n"
        "<?xml version=\"1.0\"?><Error><Code>XMinioServerNotInitialized</Code><Message>Server not initialized</Message></Error>"
    )
    assert smoke.curl_health_answer(uninitialised).error_code == "XMinioServerNotInitialized"  # type: ignore[union-attr]
    ready = smoke.curl_health_answer("HTTP/1.1 200 OK\r\nX-Minio-Write-Quorum: 5\r\n\r\n")
    assert ready is not None and ready.healthy and ready.write_quorum == "5" and repr(ready) == "200"
    assert smoke.curl_health_answer("") is None


# --- nodes on hosts of their own (storage.hosts) ----------------------------------------------

NODE_HOSTS = {f"minio{node}": {"dockerHost": f"ssh://ops@node{node}", "address": f"10.0.0.{10 + node}"} for node in range(1, 5)}
ONE_HOST_COMMAND = ["server", "--address", ":9000", "--console-address", ":9001", "http://minio{1...4}:9000/data{1...2}"]
HOSTS_COMMAND = [
    "server", "--certs-dir", "/etc/minio/certs", "--address", ":9000", "--console-address", ":9001", "https://minio{1...4}:9000/data{1...2}"
]


def outputs_on_hosts() -> dict[str, Any]:
    """A 4x2 stack with each node, and its log agent, on a Docker host of its own: as the program exports it."""
    outputs: dict[str, Any] = json.loads(json.dumps(outputs_for(4, 2, nodeHosts=NODE_HOSTS, minioCommand=HOSTS_COMMAND)))
    for node in NODE_HOSTS:
        network = [f"minio-dev-{node}-net"]
        outputs["containers"][node]["networks"] = network
        outputs["containers"][f"alloy-{node}"] = {"name": f"minio-dev-alloy-{node}", "networks": network}
    return outputs


def one_host_outputs(node_hosts: bool) -> dict[str, Any]:
    """A 4x2 stack on one host; `node_hosts`: with the nodeHosts output (None per node), else as deployed before it existed."""
    extra: dict[str, Any] = {"nodeHosts": dict.fromkeys(NODE_HOSTS), "minioCommand": ONE_HOST_COMMAND} if node_hosts else {}
    return json.loads(json.dumps(outputs_for(4, 2, **extra)))  # type: ignore[no-any-return]


class RecordingDockerCli:
    """Stand-in for subprocess.run under live.run_docker: answers as the docker CLI and records each call with
    the Docker endpoint its environment names (None: the environment inherited, DOCKER_HOST as the suite was given)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str | None, list[str]]] = []
        self.contexts: list[str] = []
        self.running = True
        self.runs = 1

    def __call__(self, command: list[str], **options: Any) -> subprocess.CompletedProcess[str]:
        environment = options.get("env")
        self.calls.append((None if environment is None else environment["DOCKER_HOST"], command))
        if environment is not None and "DOCKER_CONTEXT" in environment:
            self.contexts.append(environment["DOCKER_CONTEXT"])
        verb = command[1]
        if verb == "inspect":
            state = {"Running": self.running, "StartedAt": f"run-{self.runs}"}
            return subprocess.CompletedProcess(command, 0, json.dumps([{"State": state}]), "")
        if verb == "exec":
            return subprocess.CompletedProcess(command, 0, "HTTP/1.1 200 OK\r\nX-Minio-Write-Quorum: 5\r\n\r\n", "")
        self.running = verb == "start"
        self.runs += self.running
        return subprocess.CompletedProcess(command, 0, "", "")


@pytest.fixture
def docker_cli(monkeypatch: pytest.MonkeyPatch) -> RecordingDockerCli:
    recording = RecordingDockerCli()
    monkeypatch.setattr(subprocess, "run", recording)  # what live.run_docker calls
    monkeypatch.setenv("DOCKER_CONTEXT", "operators-laptop")
    return recording


def outage_of(node: smoke.ContainerInfo) -> None:
    """Stop and start `node` as the failover and alert checks do."""
    with NodeOutage(report=quiet, sleep=lambda seconds: None) as outage:
        outage.stop(live.DockerContainer.of(node))


def test_outputs_place_each_node_and_its_log_agent_on_its_host_and_the_rest_on_the_stacks_own() -> None:
    stack = parse_outputs(outputs_on_hosts())
    assert [(node.docker_host, node.tls) for node in stack.minio_nodes()] == [(f"ssh://ops@node{n}", True) for n in range(1, 5)]
    assert stack.container("alloy-minio2").docker_host == "ssh://ops@node2" and not stack.container("alloy-minio2").tls
    assert stack.container("prometheus").docker_host is None


@pytest.mark.parametrize("node_hosts", [True, False], ids=["nodeHosts-null", "no-nodeHosts"])
def test_outputs_of_a_one_host_stack_place_every_container_on_the_stacks_own_host(node_hosts: bool) -> None:
    stack = parse_outputs(one_host_outputs(node_hosts))
    assert {(info.docker_host, info.tls) for info in stack.containers.values()} == {(None, False)}


def test_the_programs_multi_host_outputs_place_the_nodes_on_their_hosts() -> None:
    from tests.unit.multi_host_stack import HOSTS, MAIN_HOST_ADDRESS
    from tests.unit.pulumi_harness import deploy

    exported = json.loads(json.dumps(deploy("dev", {"storage": {"hosts": HOSTS, "mainHostAddress": MAIN_HOST_ADDRESS}}).outputs))
    stack = parse_outputs(exported, "dev on hosts under mocks")
    assert [(node.docker_host, node.tls) for node in stack.minio_nodes()] == [(host["dockerHost"], True) for host in HOSTS]
    assert {stack.container(f"alloy-minio{n}").docker_host for n in (1, 4)} == {"ssh://ops@node1", "ssh://ops@node4"}
    assert stack.container("edge-proxy").docker_host is None


def test_malformed_node_hosts_are_named() -> None:
    outputs = outputs_on_hosts()
    outputs["nodeHosts"]["minio3"] = {"dockerHost": "ssh://ops@node3"}
    with pytest.raises(OutputsError, match=r"nodeHosts.minio3: expected \{dockerHost: str, address: str\} or null"):
        parse_outputs(outputs)


def test_stopping_a_node_on_its_own_host_sends_every_docker_call_to_that_host(docker_cli: RecordingDockerCli) -> None:
    outage_of(parse_outputs(outputs_on_hosts()).node(2))
    assert [verb for _, (_, verb, *_) in docker_cli.calls] == ["inspect", "stop", "start", "inspect"]
    assert {(endpoint, command[-1]) for endpoint, command in docker_cli.calls} == {("ssh://ops@node2", "minio-dev-minio2")}
    assert docker_cli.contexts == [], "DOCKER_CONTEXT would pick another daemon over the node's host"


def test_a_node_on_its_own_host_is_asked_its_health_there_over_https_with_the_stacks_ca(docker_cli: RecordingDockerCli) -> None:
    assert live.node_health(parse_outputs(outputs_on_hosts()).node(2)).healthy
    [(endpoint, command)] = docker_cli.calls
    assert endpoint == "ssh://ops@node2" and command[:3] == ["docker", "exec", "minio-dev-minio2"]
    assert command[-3:] == ["--cacert", "/etc/minio/certs/CAs/cluster-ca.crt", "https://localhost:9000/minio/health/cluster"]


def test_each_container_is_inspected_on_the_host_it_runs_on(docker_cli: RecordingDockerCli) -> None:
    stack = parse_outputs(outputs_on_hosts())
    for key in ("minio2", "alloy-minio2", "prometheus"):
        live.inspect_container(stack.container(key))
    assert [(endpoint, command[-1]) for endpoint, command in docker_cli.calls] == [
        ("ssh://ops@node2", "minio-dev-minio2"), ("ssh://ops@node2", "minio-dev-alloy-minio2"), (None, "minio-dev-prometheus")
    ]


@pytest.mark.parametrize("node_hosts", [True, False], ids=["nodeHosts-null", "no-nodeHosts"])
def test_nodes_of_a_one_host_stack_are_stopped_and_asked_as_before(docker_cli: RecordingDockerCli, node_hosts: bool) -> None:
    node = parse_outputs(one_host_outputs(node_hosts)).node(2)
    outage_of(node)
    live.node_health(node)
    assert docker_cli.calls == [
        (None, ["docker", "inspect", "--type", "container", "minio-dev-minio2"]),
        (None, ["docker", "stop", "--time", str(live.STOP_GRACE_SECONDS), "minio-dev-minio2"]),
        (None, ["docker", "start", "minio-dev-minio2"]),
        (None, ["docker", "inspect", "--type", "container", "minio-dev-minio2"]),
        (None, ["docker", "exec", "minio-dev-minio2", "curl", "-sS", "-i", "--max-time", "15", "http://localhost:9000/minio/health/cluster"]),
    ]


def test_a_node_publishes_its_api_and_console_on_its_hosts_address_only_and_nothing_on_one_host() -> None:
    assert smoke.node_published_ports(parse_outputs(outputs_on_hosts()).node(3)) == ["10.0.0.13:9000->9000/tcp", "10.0.0.13:9001->9001/tcp"]
    assert smoke.node_published_ports(parse_outputs(one_host_outputs(True)).node(3)) == []


def test_the_docker_environment_for_a_node_host_names_it_and_drops_the_context() -> None:
    environment = live.docker_environment("ssh://ops@node2", {"PATH": "/bin", "DOCKER_HOST": "unix:///x.sock", "DOCKER_CONTEXT": "lab"})
    assert environment == {"PATH": "/bin", "DOCKER_HOST": "ssh://ops@node2"}


# --- the write expected refused without write quorum -----------------------------------------


def test_refused_write_probe_stays_under_gos_post_handler_discard_limit() -> None:
    # net/http server.go: `const maxPostHandlerReadBytes = 256 << 10`
    assert smoke.GO_POST_HANDLER_DISCARD_BYTES == 256 * 1024
    assert 0 < smoke.REFUSED_WRITE_BYTES < smoke.GO_POST_HANDLER_DISCARD_BYTES


# --- reading service answers -----------------------------------------------------------------


def test_wget_status_reads_the_final_status_of_busybox_wget() -> None:
    assert smoke.wget_status("Connecting to loki:3100 (172.31.0.7:3100)\n  HTTP/1.1 200 OK\n  Content-Type: text/plain\n") == 200
    assert smoke.wget_status("  HTTP/1.1 302 Found\n  Location: /x\n  HTTP/1.1 503 Service Unavailable\n") == 503
    assert smoke.wget_status("wget: server returned error: HTTP/1.1 503 Service Unavailable\n") == 503
    assert smoke.wget_status("wget: bad address 'loki:3100'\n") is None


def test_prometheus_targets_not_up_and_jobs() -> None:
    answer = {
        "data": {
            "activeTargets": [
                {"labels": {"job": "minio-nodes"}, "scrapeUrl": "http://minio1:9000/m", "health": "up", "scrapeInterval": "15s"},
                {"labels": {"job": "minio-nodes"}, "scrapeUrl": "http://minio2:9000/m", "health": "down", "lastError": "refused", "scrapeInterval": "15s"},
                {"labels": {"job": "minio-cluster"}, "scrapeUrl": "http://x", "health": "unknown", "scrapeInterval": "1m"},
            ]
        }
    }
    assert smoke.targets_not_up(answer) == ["minio-nodes http://minio2:9000/m: down refused", "minio-cluster http://x: unknown"]
    assert smoke.target_jobs(answer) == {"minio-nodes": 2, "minio-cluster": 1}
    assert smoke.scrape_interval(answer, "minio-cluster") == 60 and smoke.scrape_interval(answer, "absent") is None


def test_go_durations() -> None:
    assert [smoke.go_duration_seconds(text) for text in ("15s", "1m30s", "500ms", "2h")] == [15, 90, 0.5, 7200]
    with pytest.raises(ValueError):
        smoke.go_duration_seconds("15 s")


def test_alert_filters_for_prometheus_and_alertmanager() -> None:
    prometheus = {
        "data": {
            "alerts": [
                {"labels": {"alertname": "MinIONodeDown"}, "state": "pending"},
                {"labels": {"alertname": "MinIONodeDown"}, "state": "firing"},
                {"labels": {"alertname": "Watchdog"}, "state": "firing"},
            ]
        }
    }
    assert len(smoke.prometheus_alerts(prometheus, "MinIONodeDown")) == 1
    assert len(smoke.prometheus_alerts(prometheus, "MinIONodeDown", "pending")) == 1
    alertmanager = [
        {"labels": {"alertname": "MinIONodeDown"}, "status": {"state": "active"}},
        {"labels": {"alertname": "MinIONodeDown"}, "status": {"state": "suppressed"}},
        {"labels": {"alertname": "Watchdog"}, "status": {"state": "active"}},
    ]
    assert smoke.alertmanager_alerts(alertmanager, "MinIONodeDown") == [alertmanager[0]]


def test_alert_rule_duration_and_group_interval() -> None:
    answer = {"data": {"groups": [{"interval": 15, "rules": [{"type": "alerting", "name": "MinIONodeDown", "duration": 60}]}]}}
    assert smoke.alert_rule(answer, "MinIONodeDown") == smoke.AlertTiming(hold=60, evaluation=15, keep_firing=0)
    answer["data"]["groups"][0]["rules"][0]["keepFiringFor"] = 300
    assert smoke.alert_rule(answer, "MinIONodeDown").keep_firing == 300  # type: ignore[union-attr]
    assert smoke.alert_rule(answer, "Other") is None


def test_loki_lines_keep_labels_and_line() -> None:
    answer = {"data": {"result": [{"stream": {"op_type": "write"}, "values": [["1", "PutObject"], ["2", "x"]]}]}}
    assert smoke.loki_lines(answer) == [({"op_type": "write"}, "PutObject"), ({"op_type": "write"}, "x")]


@pytest.mark.parametrize("secret", ["rootuser0123456789ab", "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90", "we.ird+key/with=signs"])
def test_secret_search_pattern_matches_the_secret_without_holding_it(secret: str) -> None:
    pattern = smoke.hidden_literal_pattern(secret)
    assert secret not in pattern
    line = f'{{"accessKey":"{secret}","api":"PutObject"}}'
    # RE2, the engine Loki's line filters use
    assert re2.search(pattern, line) and not re2.search(pattern, line.replace(secret, secret[:-1] + "#"))


def test_multipart_parts_from_etag() -> None:
    assert smoke.multipart_parts('"9b2cf535f27731c974343645a3985328-5"') == 5
    assert smoke.multipart_parts("9b2cf535f27731c974343645a3985328") == 1


def test_pattern_stream_gives_exactly_size_bytes_and_their_sha256() -> None:
    import hashlib

    stream = smoke.PatternStream(10, b"abc")
    data = stream.read(4) + stream.read(100) + stream.read()
    assert data == b"abcabcabca" and stream.sha256.hexdigest() == hashlib.sha256(data).hexdigest()


def test_policy_buckets_reads_allowed_s3_resources() -> None:
    policy = {
        "Statement": [
            {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": ["arn:aws:s3:::artifacts", "arn:aws:s3:::logs"]},
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::logs/*"},
            {"Effect": "Deny", "Action": ["s3:*"], "Resource": ["arn:aws:s3:::secret"]},
            {"Effect": "Allow", "Action": ["admin:ServerInfo"], "Resource": ["arn:minio:admin:::*"]},
        ]
    }
    assert smoke.policy_buckets(policy) == {"artifacts", "logs"}


def test_login_form_action_finds_the_form_with_the_password_field() -> None:
    page = """<html><form id="kc-locale" action="/locale"><input name="kc_locale"></form>
    <form id="kc-form-login" onsubmit="login.disabled = true; return true;"
      action="https://localhost/auth/realms/r/login-actions/authenticate?session_code=abc&amp;execution=e&amp;client_id=minio-console"
      method="post"><input id="username" name="username"><input id="password" name="password" type="password"></form></html>"""
    assert smoke.login_form_action(page) == (
        "https://localhost/auth/realms/r/login-actions/authenticate?session_code=abc&execution=e&client_id=minio-console"
    )
    assert smoke.login_form_action("<html><p>Invalid request</p></html>") is None


def test_pkce_challenge_matches_rfc_7636_appendix_b() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert smoke.pkce_pair(verifier) == (verifier, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")


def test_unverified_claims_decode_the_payload() -> None:
    import jwt

    token = jwt.encode({"policy": ["consoleAdmin"], "azp": "minio-console"}, "k" * 32, algorithm="HS256")
    assert smoke.unverified_claims(token)["policy"] == ["consoleAdmin"]


def test_self_signed_certificate_is_recognised() -> None:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def certificate(subject: str, issuer: str, key: Any) -> str:
        now = datetime.datetime.now(datetime.UTC)
        built = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(1)
            .not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256())
        )
        return built.public_bytes(serialization.Encoding.PEM).decode()

    key = ec.generate_private_key(ec.SECP256R1())
    assert smoke.is_self_signed(certificate("localhost", "localhost", key))
    assert not smoke.is_self_signed(certificate("storage.example.com", "Example CA", key))


# --- scripts/smoke ---------------------------------------------------------------------------


def run_smoke(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "scripts" / "smoke"), *args], cwd=ROOT, env={**os.environ, **(env or {})},
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )


def test_smoke_script_documents_its_flags() -> None:
    result = run_smoke("--help")
    assert result.returncode == 0
    for flag in ("--outputs FILE", "--no-failover", "--yes-on-prod", "--ca-bundle FILE"):
        assert flag in result.stdout


def test_smoke_script_needs_a_stack_and_known_options() -> None:
    assert run_smoke().returncode == 2
    unknown = run_smoke("dev", "--failover-please")
    assert unknown.returncode == 2 and "unknown option --failover-please" in unknown.stderr


def test_smoke_script_stops_at_once_without_a_docker_daemon(tmp_path: Path) -> None:
    result = run_smoke("dev", "--no-failover", env={"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: no Docker daemon answers the docker CLI (DOCKER_HOST=unix://{tmp_path}/no-docker.sock); "
        "the smoke tests inspect the stack's containers through it."
    ]


@pytest.fixture(autouse=True)
def _no_smoke_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in SMOKE_ENV:
        monkeypatch.delenv(key, raising=False)
    yield
