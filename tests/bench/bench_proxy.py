"""Benchmark (not a test): the rendered edge proxy beside direct access and MinIO's reference configuration.

Three paths to the same origin, all on loopback: direct, through real nginx running the rendered
configuration ("ours"), and through nginx running MinIO's reference nginx.conf ("reference",
tests/bench/reference_proxy.py). The origins are not MinIO (tests/bench/origins.py): for large
objects a sink that drains PUT bodies in the kernel and sends GET bodies with sendfile(), for small
objects nginx serving files with sendfile. Paths alternate within every round (the order rotates
from round to round) and ratios are taken round by round, so a machine shared with other work
slows both sides of a pair alike; each figure is the median of the rounds, with their range.

  large   PUT then GET of one object (curl), on the plain and the TLS S3 listener
  small   4 KiB GET and PUT (wrk, PUT with a Lua script) at each concurrency, plain and TLS
  memory  a PUT and a GET of --memory-gib through our proxy while its resident memory is sampled

CPU time is read from /proc for the proxy's processes (master and workers) over each run, and
reported per GiB and per 1000 requests; the origin's and the client's are reported beside it, and
"cores busy" is everyone's CPU time over the run's wall time.

    sudo .venv/bin/python tests/bench/bench_proxy.py [--rounds 5] [--size-gib 1] [--duration 3]
        [--workloads large,small,memory] [--listeners plain,tls] [--connections 1,16,64]
        [--candidate 'KEY=VALUE;;REGEX=>REPLACEMENT;;...' ...]

Each --candidate adds a path (c1, c2, ...): our configuration with ProxyBuffers / ProxyRuntime
fields changed (response_buffers=0, body=4m, access_log_buffer=none, worker_processes=1, ...) and
its rendered text further rewritten by REGEX=>REPLACEMENT items, for probes the context has no
field for (a different log_format, say); items are separated by ';;'.
Numbers depend on the machine; compare the ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from infra.edge import ProxyBuffers, ProxyRuntime, render_nginx_conf, throwaway_certificate  # noqa: E402
from tests.bench.measurements import (  # noqa: E402
    Cost,
    CpuMeter,
    Spread,
    Transfer,
    WrkRun,
    curl_transfer,
    peak_resident_during,
    put_script,
    wrk,
)
from tests.bench.origins import ORIGIN_ADDRESS, REFERENCE_ADDRESS, SINK_ADDRESS, NginxOrigin, ObjectSink, nginx_pids  # noqa: E402
from tests.bench.reference_proxy import ReferenceProxy  # noqa: E402
from tests.lab.proxy_lab import PROXY_ADDRESS, LabProxy, all_upstreams_at, free_port, lab_stack, wait_for_port  # noqa: E402

GIB = 1024**3
MIB = 1024**2
SMALL = 4096
BUCKET = "bench"
CORES = os.cpu_count() or 1


@dataclass
class TunedProxy(LabProxy):
    """Our rendered configuration, with some context fields changed and its text optionally edited.

    Several run at once on the lab's proxy address: any listener the lab stack chose no port for
    (an internal one at a fixed port) is moved to a free port.
    """

    runtime_changes: dict[str, object] = field(default_factory=dict)
    edits: list[tuple[str, str]] = field(default_factory=list)

    @property
    def runtime(self) -> ProxyRuntime:
        return dataclasses.replace(super().runtime, **self.runtime_changes)  # type: ignore[arg-type]

    def start(self) -> TunedProxy:
        (self.root / "temp").mkdir(parents=True, exist_ok=True)
        if self.tls:
            material = throwaway_certificate(PROXY_ADDRESS)
            (self.root / "tls").mkdir(exist_ok=True)
            (self.root / "tls" / "server.crt").write_text(material.certificate)
            (self.root / "tls" / "server.key").write_text(material.key)
        (self.root / "runbook").mkdir(exist_ok=True)
        (self.root / "runbook" / "index.html").write_text("runbook")
        text = render_nginx_conf(self.config, self.upstreams, self.runtime, self.buffers)
        chosen = {str(port) for port in self.config.edge.published_ports().values()}
        for port in set(re.findall(rf"listen {re.escape(PROXY_ADDRESS)}:(\d+)", text)) - chosen:
            text = text.replace(f"listen {PROXY_ADDRESS}:{port}", f"listen {PROXY_ADDRESS}:{free_port(PROXY_ADDRESS)}")
        for pattern, replacement in self.edits:
            text, count = re.subn(pattern, replacement, text)
            if not count:
                raise SystemExit(f"--candidate-edit {pattern!r} matches nothing in the rendered configuration")
        conf = self.root / "nginx.conf"
        conf.write_text(text)
        self.process = subprocess.Popen(
            ["nginx", "-p", str(self.root), "-e", str(self.root / "error.log"), "-c", str(conf), "-g", "daemon off; user root;"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for_port(PROXY_ADDRESS, self.s3_port, self.process)
        return self

    def pids(self) -> list[int]:
        assert self.process is not None
        return nginx_pids(self.process.pid)


@dataclass(frozen=True)
class Route:
    """One way to the origin: its name, base URL and the proxy processes on it (none for direct)."""

    name: str
    base: str
    pids: Callable[[], list[int]]


Candidate = tuple[dict[str, object], dict[str, object], list[tuple[str, str]]]


def parse_candidate(spec: str) -> Candidate:
    """ProxyBuffers changes, ProxyRuntime changes (typed like each field) and text edits of one --candidate."""
    buffers, runtime = {f.name: f for f in dataclasses.fields(ProxyBuffers)}, {f.name: f for f in dataclasses.fields(ProxyRuntime)}
    to_buffers: dict[str, object] = {}
    to_runtime: dict[str, object] = {}
    edits: list[tuple[str, str]] = []
    for item in filter(None, (part.strip() for part in spec.split(";;"))):
        if "=>" in item:
            pattern, replacement = item.split("=>", 1)
            edits.append((pattern, replacement))
            continue
        key, _, raw = item.partition("=")
        value: object = None if raw.lower() == "none" else int(raw) if key in ("response_buffers", "worker_connections") else raw
        if key in buffers:
            to_buffers[key] = value
        elif key in runtime:
            to_runtime[key] = value
        else:
            raise SystemExit(f"--candidate {key}: not a field of ProxyBuffers or ProxyRuntime")
    return to_buffers, to_runtime, edits


def edge_ssl_settings() -> str:
    """The http-level ssl_* directives of our rendered TLS configuration, certificate lines aside."""
    text = render_nginx_conf(lab_stack(tls=True), all_upstreams_at(f"{SINK_ADDRESS}:1"))
    return "".join(line + "\n" for line in text.splitlines() if line.startswith("    ssl_") and "ssl_certificate" not in line)


@contextlib.contextmanager
def started(process: object) -> Iterator[object]:
    try:
        yield process.start()  # type: ignore[attr-defined]
    finally:
        process.stop()  # type: ignore[attr-defined]


def rotated(routes: list[Route], round_number: int) -> list[Route]:
    shift = round_number % len(routes)
    return routes[shift:] + routes[:shift]


# ---- what one run of one route measured, and the table of them -------------------------------


@dataclass(frozen=True)
class Sample:
    """One run on one route: its rate, how much it moved, and what it cost everyone."""

    rate: float
    """MiB/s, or requests/s."""
    units: float
    """GiB moved, or thousands of requests: the CPU figures are per unit."""
    seconds: float
    cost: Cost
    p50_ms: float | None = None
    p99_ms: float | None = None

    @property
    def path_cpu(self) -> float:
        """CPU seconds per unit of everything on the path: client, proxy (if any) and origin."""
        return (self.cost.client + self.cost.proxy + self.cost.origin) / self.units


Samples = dict[tuple[str, str], list[Sample]]
"""(route, workload) to one sample per round, rounds in order."""


def paired(samples: Samples, workload: str, name: str, other: str, value: Callable[[Sample, Sample], float]) -> Spread:
    return Spread.of([value(mine, theirs) for mine, theirs in zip(samples[(name, workload)], samples[(other, workload)])])


def table(samples: Samples, names: list[str], workloads: list[str], unit: str, cpu_unit: str) -> list[str]:
    """Every workload's figures: medians over the rounds, ratios taken round by round, (low-high)."""
    peers = [name for name in names if name != "direct"]
    mine = [name for name in peers if name != "reference"]
    latency = any(samples[(names[0], workload)][0].p99_ms is not None for workload in workloads)
    header = ["workload", f"{unit} " + " / ".join(names)]
    header += [f"{name} / direct" for name in peers]
    header += [f"{name} / reference" for name in mine if "reference" in names]
    if latency:
        header += ["p50 ms " + " / ".join(names), "p99 ms " + " / ".join(names), *(f"{name} added p99 ms" for name in mine)]
    header += [f"proxy CPU s/{cpu_unit} " + " / ".join(peers), f"client / origin CPU s/{cpu_unit} (direct)"]
    header += ["CPU-bound ceiling " + " / ".join(peers), "cores busy " + " / ".join(names)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for workload in workloads:
        runs = {name: samples[(name, workload)] for name in names}
        row = [workload, " / ".join(f"{Spread.of([r.rate for r in runs[name]]).median:.0f}" for name in names)]
        row += [paired(samples, workload, name, "direct", lambda a, b: a.rate / b.rate).ratio() for name in peers]
        row += [paired(samples, workload, name, "reference", lambda a, b: a.rate / b.rate).ratio() for name in mine if "reference" in names]
        if latency:
            row.append(" / ".join(f"{Spread.of([r.p50_ms or 0.0 for r in runs[name]]).median:.2f}" for name in names))
            row.append(" / ".join(f"{Spread.of([r.p99_ms or 0.0 for r in runs[name]]).median:.2f}" for name in names))
            row += [paired(samples, workload, name, "direct", lambda a, b: (a.p99_ms or 0.0) - (b.p99_ms or 0.0)).ratio() for name in mine]
        row.append(" / ".join(f"{Spread.of([r.cost.proxy / r.units for r in runs[name]]).median:.4f}" for name in peers))
        direct = runs["direct"]
        row.append(
            f"{Spread.of([r.cost.client / r.units for r in direct]).median:.4f} / {Spread.of([r.cost.origin / r.units for r in direct]).median:.4f}"
        )
        # when the cores are what limits both paths: direct's CPU per unit over the proxied path's
        row.append(" / ".join(f"{paired(samples, workload, 'direct', name, lambda a, b: a.path_cpu / b.path_cpu).median:.2f}" for name in peers))
        row.append(" / ".join(f"{Spread.of([r.path_cpu * r.units / r.seconds for r in runs[name]]).median:.2f}" for name in names) + f" of {CORES}")
        lines.append("| " + " | ".join(row) + " |")
    return lines


# ---- large objects ------------------------------------------------------------------------------


def large_rounds(
    routes: list[Route], origin_pids: Callable[[], list[int]], source: Path, rounds: int, operations: list[str], listener: str
) -> tuple[Samples, set[str]]:
    samples: Samples = {}
    ciphers: set[str] = set()
    size = source.stat().st_size
    for route in routes:  # warm-up: connections, page cache, nginx's first allocations
        curl_transfer(f"{route.base}/{BUCKET}/warm-up", source)
        curl_transfer(f"{route.base}/{BUCKET}/{source.name}")
    for round_number in range(rounds):
        for route in rotated(routes, round_number):
            meter = CpuMeter(route.pids, origin_pids)
            for operation in sorted(operations, reverse=True):
                url = f"{route.base}/{BUCKET}/{source.name if operation == 'GET' else f'{route.name}-{round_number}'}"
                transfer, cost = meter.measure(lambda: curl_transfer(url, source if operation == "PUT" else None))
                assert isinstance(transfer, Transfer)
                if transfer.status != 200 or transfer.bytes != size:
                    raise RuntimeError(f"{operation} {url}: status {transfer.status}, {transfer.bytes} of {size} bytes")
                if transfer.cipher:
                    ciphers.add(transfer.cipher)
                workload = f"{size / MIB:.0f} MiB {operation} ({listener})"
                sample = Sample(transfer.bytes / MIB / transfer.seconds, transfer.bytes / GIB, transfer.seconds, cost)
                samples.setdefault((route.name, workload), []).append(sample)
    return samples, ciphers


# ---- small objects ------------------------------------------------------------------------------


def threads_for(connections: int) -> int:
    return 1 if connections == 1 else 2


def small_rounds(
    routes: list[Route], origin_pids: Callable[[], list[int]], script: Path, connections: list[int], rounds: int, seconds: float,
    operations: list[str], listener: str,
) -> Samples:
    samples: Samples = {}
    for route in routes:
        wrk(f"{route.base}/{BUCKET}/small.bin", 16, 2, 1.0)
        wrk(f"{route.base}/{BUCKET}/put.bin", 16, 2, 1.0, script)
    for operation in operations:
        for count in connections:
            for round_number in range(rounds):
                for route in rotated(routes, round_number):
                    meter = CpuMeter(route.pids, origin_pids)
                    target = f"{route.base}/{BUCKET}/{'small.bin' if operation == 'GET' else 'put.bin'}"
                    run, cost = meter.measure(
                        lambda: wrk(target, count, threads_for(count), seconds, script if operation == "PUT" else None)
                    )
                    assert isinstance(run, WrkRun)
                    if run.failures:
                        raise RuntimeError(f"wrk {operation} {target} -c{count}: {run.failures} failed requests")
                    workload = f"4 KiB {operation}, {count} conn. ({listener})"
                    sample = Sample(run.rate, run.requests / 1000, run.seconds, cost, run.p50_ms, run.p99_ms)
                    samples.setdefault((route.name, workload), []).append(sample)
    return samples


def negotiated(address: str, port: int) -> str:
    """What OpenSSL's client defaults (wrk's and curl's) agree with a listener: protocol and cipher."""
    result = subprocess.run(
        ["openssl", "s_client", "-connect", f"{address}:{port}"], input="", capture_output=True, text=True, timeout=30
    )
    match = re.search(r"New, (\S+), Cipher is (\S+)", result.stdout)
    return f"{match[1]} {match[2]}" if match else "unknown"


# ---- the run ------------------------------------------------------------------------------------


def random_file(path: Path, size: int) -> Path:
    block = os.urandom(min(size, 64 * MIB))
    with path.open("wb") as out:
        written = 0
        while written < size:
            piece = block[: min(len(block), size - written)]
            out.write(piece)
            written += len(piece)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="rounds per workload; every round runs each path once")
    parser.add_argument("--size-gib", type=float, default=1.0, help="object size of the large-object rounds")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds of each wrk run")
    parser.add_argument("--connections", default="1,16,64", help="wrk concurrencies of the small-object rounds")
    parser.add_argument("--operations", default="GET,PUT", help="operations of the large- and small-object rounds")
    parser.add_argument("--memory-gib", type=float, default=5.0, help="transfer size of the memory measurement")
    parser.add_argument("--workloads", default="large,small,memory")
    parser.add_argument("--listeners", default="plain,tls")
    parser.add_argument("--no-reference", action="store_true", help="leave MinIO's reference configuration out")
    parser.add_argument("--candidate", action="append", default=[], metavar="SPEC")
    args = parser.parse_args()
    workloads, listeners = set(args.workloads.split(",")), args.listeners.split(",")
    connections = [int(c) for c in args.connections.split(",")]
    operations = args.operations.split(",")
    size, memory_size = int(args.size_gib * GIB), int(args.memory_gib * GIB)
    candidates = [parse_candidate(spec) for spec in args.candidate]
    limit = f"{max(6, int(args.memory_gib) + 1)}g"
    report: list[str] = [
        f"nginx {subprocess.run(['nginx', '-v'], capture_output=True, text=True).stderr.strip().split('/')[-1]}, "
        f"{CORES} cores, load average {os.getloadavg()[0]:.1f} at the start"
    ]
    for number, spec in enumerate(args.candidate, 1):
        report.append(f"c{number}: {spec}")

    with tempfile.TemporaryDirectory(prefix="bench-proxy-") as scratch, contextlib.ExitStack() as running:
        root = Path(scratch)
        files = root / "files"
        files.mkdir()
        material = throwaway_certificate(SINK_ADDRESS, addresses=(ORIGIN_ADDRESS, REFERENCE_ADDRESS))
        (root / "origin.crt").write_text(material.certificate)
        (root / "origin.key").write_text(material.key)
        tls_files = (root / "origin.crt", root / "origin.key")
        www = root / "www"
        (www / BUCKET).mkdir(parents=True)
        random_file(www / BUCKET / "small.bin", SMALL)
        script = put_script(root / "put.lua", SMALL)

        def proxies(origin_endpoint: Callable[[bool], str], tag: str) -> dict[str, dict[str, Route]]:
            """Our proxy (and the candidate, and the reference) per listener, in front of one origin."""
            routes: dict[str, dict[str, Route]] = {}
            for listener in listeners:
                tls = listener == "tls"
                upstreams = all_upstreams_at(origin_endpoint(False))
                ours = running.enter_context(started(TunedProxy(root / f"{tag}-ours-{listener}", lab_stack(tls=tls, max_body_size=limit), upstreams)))
                assert isinstance(ours, TunedProxy)
                chosen = {
                    "direct": Route("direct", f"{'https' if tls else 'http'}://{origin_endpoint(tls)}", list),
                    "ours": Route("ours", ours.url("s3").rstrip("/"), ours.pids),
                }
                for number, (buffer_changes, runtime_changes, edits) in enumerate(candidates, 1):
                    candidate = running.enter_context(started(TunedProxy(
                        root / f"{tag}-c{number}-{listener}", lab_stack(tls=tls, max_body_size=limit), upstreams,
                        dataclasses.replace(ProxyBuffers(), **buffer_changes), runtime_changes=runtime_changes, edits=edits,  # type: ignore[arg-type]
                    )))
                    assert isinstance(candidate, TunedProxy)
                    chosen[f"c{number}"] = Route(f"c{number}", candidate.url("s3").rstrip("/"), candidate.pids)
                if not args.no_reference:
                    reference = running.enter_context(started(ReferenceProxy(
                        root / f"{tag}-reference-{listener}", origin_endpoint(False), tls_files if tls else None,
                        edge_ssl_settings() if tls else "",
                    )))
                    assert isinstance(reference, ReferenceProxy)
                    chosen["reference"] = Route("reference", reference.url(tls), reference.pids)
                routes[listener] = chosen
                if tls:
                    report.append(f"TLS negotiated with OpenSSL's client defaults (as wrk), ours: {negotiated(PROXY_ADDRESS, ours.s3_port)}")
            return routes

        if workloads & {"large", "memory"}:
            source = random_file(files / "object.bin", size)
            sparse = files / "memory.bin"
            with sparse.open("wb") as out:
                out.truncate(memory_size)
            sink = running.enter_context(started(ObjectSink(files, tls_files)))
            assert isinstance(sink, ObjectSink)
            large_routes = proxies(sink.endpoint, "large")
            if "memory" in workloads:
                # first, on proxies that have moved nothing yet: the growth is what one transfer holds
                report += ["", f"### Resident memory of our nginx (master and workers) over {args.memory_gib:g} GiB, from start-up", ""]
                report += ["| listener | transfer | before MiB | peak MiB | growth MiB |", "|---|---|---|---|---|"]
                for listener in listeners:
                    ours_route = large_routes[listener]["ours"]
                    for operation in ("PUT", "GET"):
                        url = f"{ours_route.base}/{BUCKET}/memory.bin"
                        before, peak, transfer = peak_resident_during(
                            ours_route.pids(), lambda: curl_transfer(url, sparse if operation == "PUT" else None)
                        )
                        assert isinstance(transfer, Transfer) and transfer.status == 200 and transfer.bytes == memory_size
                        report.append(f"| {listener} | {operation} | {before / 1024:.1f} | {peak / 1024:.1f} | {(peak - before) / 1024:.1f} |")
            if "large" in workloads:
                for listener in listeners:
                    routes = list(large_routes[listener].values())
                    samples, ciphers = large_rounds(routes, sink.pids, source, args.rounds, operations, listener)
                    report += ["", f"### Large objects, {listener} listener, median (range) of {args.rounds} rounds", ""]
                    report += table(samples, [r.name for r in routes], sorted({w for _, w in samples}, reverse=True), "MiB/s", "GiB")
                    if ciphers:
                        report.append(f"\nnegotiated (curl): {', '.join(sorted(ciphers))}")
        if "small" in workloads:
            origin = running.enter_context(started(NginxOrigin(root / "origin", www, tls_files, edge_ssl_settings())))
            assert isinstance(origin, NginxOrigin)
            small_routes = proxies(origin.endpoint, "small")
            for listener in listeners:
                routes = list(small_routes[listener].values())
                samples = small_rounds(routes, origin.pids, script, connections, args.rounds, args.duration, operations, listener)
                report += ["", f"### Small objects, {listener} listener, {args.duration:g} s wrk runs, median (range) of {args.rounds} rounds", ""]
                report += table(samples, [r.name for r in routes], list(dict.fromkeys(w for _, w in samples)), "req/s", "1000 req")
                if listener == "tls":
                    report.append(f"\nnegotiated with the origin (direct): {negotiated(ORIGIN_ADDRESS, origin.tls_port)}")
        report.append(f"\nload average {os.getloadavg()[0]:.1f} at the end")
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
