"""Benchmark (not a test): the rendered edge proxy beside direct access and MinIO's reference configuration.

Three paths to one upstream, all on loopback: direct, through Debian's nginx running the rendered
configuration ("ours"), and through nginx running MinIO's reference nginx.conf ("reference",
tests/bench/reference_proxy.py). The upstream is nginx too, not MinIO (tests/bench/origins.py):
files with sendfile for GETs, PUT bodies read into memory. Paths alternate within every round (the
order rotates from round to round: A B C, B C A, ...) and ratios are taken round by round, so a
machine shared with other work slows both sides of a pair alike; each figure is the median of the
rounds, with their range.

  large   PUT then GET of one object (curl), on the plain and the TLS S3 listener
  small   4 KiB GET and PUT (wrk, a Lua script for PUT and for the latency summary) at each concurrency
  memory  a PUT and a GET of --memory-gib through our proxy while its resident memory is sampled,
          and a check that nginx never wrote a temporary file

CPU time is read from /proc/<pid>/stat (utime + stime) of the proxy's master and workers over
each run, and reported per GiB and per 1000 requests; the upstream's and the client's beside it.

    sudo .venv/bin/python tests/bench/bench_proxy.py            # the full run, 10-15 minutes on 2 cores
    sudo .venv/bin/python tests/bench/bench_proxy.py --quick    # every workload once over, about 2 minutes
        [--rounds 5] [--size-mib 512] [--duration 3] [--workloads large,small,memory]
        [--listeners plain,tls] [--connections 1,16,64] [--candidate 'KEY=VALUE;;REGEX=>REPLACEMENT;;...' ...]

Each --candidate adds a path (c1, c2, ...): our configuration with ProxyBuffers / ProxyRuntime
fields changed (response_buffers=0, head=16k, access_log_buffer=none, worker_processes=1, ...) and
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
from typing import Protocol, TypeVar

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
    wrk,
    wrk_script,
)
from tests.bench.origins import BUCKET, ORIGIN_ADDRESS, REFERENCE_ADDRESS, NginxOrigin, nginx_pids  # noqa: E402
from tests.bench.reference_proxy import ReferenceProxy  # noqa: E402
from tests.lab.proxy_lab import PROXY_ADDRESS, LabProxy, all_upstreams_at, free_port, lab_stack  # noqa: E402

GIB = 1024**3
MIB = 1024**2
SMALL = 4096
CORES = os.cpu_count() or 1
# what the proxy logs when it spools a body to disk: a run that shows it breaks a constraint
TEMP_FILE_WARNING = re.compile(r"buffered to a temporary file")


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

    def rendered(self) -> str:
        text = super().rendered()
        chosen = {str(port) for port in self.config.edge.published_ports().values()}
        for port in set(re.findall(rf"listen {re.escape(PROXY_ADDRESS)}:(\d+)", text)) - chosen:
            text = text.replace(f"listen {PROXY_ADDRESS}:{port}", f"listen {PROXY_ADDRESS}:{free_port(PROXY_ADDRESS)}")
        for pattern, replacement in self.edits:
            text, count = re.subn(pattern, replacement, text)
            if not count:
                raise SystemExit(f"--candidate edit {pattern!r} matches nothing in the rendered configuration")
        return text

    def pids(self) -> list[int]:
        assert self.process is not None
        return nginx_pids(self.process.pid)

    def spooled(self) -> list[str]:
        """Every sign of a temporary file: warnings in the error log, files left in the temp folders."""
        warnings = [line for line in self.error_log().splitlines() if TEMP_FILE_WARNING.search(line)]
        return warnings + [str(path) for path in (self.root / "temp").rglob("*") if path.is_file()]


@dataclass(frozen=True)
class Route:
    """One way to the upstream: its name, base URL and the proxy processes on it (none for direct)."""

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
            edits.append((pattern, replacement.replace("\\n", "\n")))
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
    text = render_nginx_conf(lab_stack(tls=True), all_upstreams_at(f"{ORIGIN_ADDRESS}:1"))
    return "".join(line + "\n" for line in text.splitlines() if line.startswith("    ssl_") and "ssl_certificate" not in line)


class Server(Protocol):
    def start(self) -> object: ...

    def stop(self) -> None: ...


S = TypeVar("S", bound=Server)


@contextlib.contextmanager
def started(server: S) -> Iterator[S]:
    try:
        server.start()
        yield server
    finally:
        server.stop()


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
        """CPU seconds per unit of everything on the path: client, proxy (if any) and upstream."""
        return (self.cost.client + self.cost.proxy + self.cost.origin) / self.units


Samples = dict[tuple[str, str], list[Sample]]
"""(route, workload) to one sample per round, rounds in order."""


def paired(samples: Samples, workload: str, name: str, other: str, value: Callable[[Sample, Sample], float]) -> Spread:
    return Spread.of([value(mine, theirs) for mine, theirs in zip(samples[(name, workload)], samples[(other, workload)])])


def rate_ratio(a: Sample, b: Sample) -> float:
    return a.rate / b.rate


def added_p99(a: Sample, b: Sample) -> float:
    return (a.p99_ms or 0.0) - (b.p99_ms or 0.0)


def cpu_ceiling(a: Sample, b: Sample) -> float:
    return a.path_cpu / b.path_cpu


def table(samples: Samples, names: list[str], workloads: list[str], unit: str, cpu_unit: str, per_unit: float) -> list[str]:
    """Every workload's figures: medians over the rounds, ratios taken round by round, (low-high).

    `per_unit` is the rate's unit per CPU unit (MiB per GiB, requests per 1000 requests)."""
    peers = [name for name in names if name != "direct"]
    mine = [name for name in peers if name != "reference"]
    latency = samples[(names[0], workloads[0])][0].p99_ms is not None
    header = ["workload", f"{unit} " + " / ".join(names)]
    header += [f"{name} / direct" for name in peers]
    header += [f"{name} / reference" for name in mine if "reference" in names]
    if latency:
        header += ["p50 ms " + " / ".join(names), "p99 ms " + " / ".join(names), *(f"{name} added p99 ms" for name in mine)]
    header += [f"proxy CPU s/{cpu_unit} " + " / ".join(peers), f"client / upstream CPU s/{cpu_unit} (direct)"]
    header += [f"upstream alone, one core, {unit}", "CPU-bound ceiling " + " / ".join(peers), "cores busy " + " / ".join(names)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for workload in workloads:
        runs = {name: samples[(name, workload)] for name in names}
        row = [workload, " / ".join(f"{Spread.of([r.rate for r in runs[name]]).median:.0f}" for name in names)]
        row += [paired(samples, workload, name, "direct", rate_ratio).ratio() for name in peers]
        row += [paired(samples, workload, name, "reference", rate_ratio).ratio() for name in mine if "reference" in names]
        if latency:
            row.append(" / ".join(f"{Spread.of([r.p50_ms or 0.0 for r in runs[name]]).median:.2f}" for name in names))
            row.append(" / ".join(f"{Spread.of([r.p99_ms or 0.0 for r in runs[name]]).median:.2f}" for name in names))
            row += [paired(samples, workload, name, "direct", added_p99).ratio() for name in mine]
        row.append(" / ".join(f"{Spread.of([r.cost.proxy / r.units for r in runs[name]]).median:.4f}" for name in peers))
        direct = runs["direct"]
        row.append(
            f"{Spread.of([r.cost.client / r.units for r in direct]).median:.4f} / {Spread.of([r.cost.origin / r.units for r in direct]).median:.4f}"
        )
        # what the upstream would serve with a core of its own: it must outrun the proxied path
        row.append(f"{per_unit / Spread.of([r.cost.origin / r.units for r in direct]).median:.0f}")
        # when the cores are what limits both paths: the direct path's CPU per unit over the proxied one's
        row.append(" / ".join(f"{paired(samples, workload, 'direct', name, cpu_ceiling).median:.2f}" for name in peers))
        row.append(" / ".join(f"{Spread.of([r.path_cpu * r.units / r.seconds for r in runs[name]]).median:.2f}" for name in names) + f" of {CORES}")
        lines.append("| " + " | ".join(row) + " |")
    return lines


@dataclass(frozen=True)
class Bar:
    """One line of the issue's bar, checked against a run's medians."""

    what: str
    figure: str
    met: bool


def bars(samples: Samples, names: list[str]) -> list[Bar]:
    found: list[Bar] = []
    workloads = sorted({workload for _, workload in samples})
    for workload in workloads:
        ratio = paired(samples, workload, "ours", "direct", rate_ratio)
        if "MiB" in workload:
            found.append(Bar(f"{workload}: ours / direct >= 0.95", ratio.ratio(), ratio.median >= 0.95))
        elif workload.startswith("4 KiB GET, 64 conn."):
            found.append(Bar(f"{workload}: ours / direct >= 0.6", ratio.ratio(), ratio.median >= 0.6))
        if "conn." in workload:
            added = paired(samples, workload, "ours", "direct", added_p99)
            found.append(Bar(f"{workload}: added p99 < 1 ms", added.ratio(), added.median < 1.0))
        if "reference" in names:
            peer = paired(samples, workload, "ours", "reference", rate_ratio)
            found.append(Bar(f"{workload}: ours / reference >= 1", peer.ratio(), peer.median >= 1.0))
    return found


# ---- large objects ------------------------------------------------------------------------------


def large_rounds(
    routes: list[Route], origin_pids: Callable[[], list[int]], source: Path, rounds: int, operations: list[str], listener: str
) -> tuple[Samples, set[str]]:
    samples: Samples = {}
    ciphers: set[str] = set()
    size = source.stat().st_size
    for route in routes:  # warm-up: connections, page cache, the upstream's body buffer, nginx's first allocations
        curl_transfer(f"{route.base}/{BUCKET}/upload/warm-up", source)
        curl_transfer(f"{route.base}/{BUCKET}/{source.name}")
    for round_number in range(rounds):
        for route in rotated(routes, round_number):
            meter = CpuMeter(route.pids, origin_pids)
            for operation in operations:
                put = operation == "PUT"
                url = f"{route.base}/{BUCKET}/" + (f"upload/{route.name}-{round_number}" if put else source.name)
                transfer, cost = meter.measure(lambda: curl_transfer(url, source if put else None))
                assert isinstance(transfer, Transfer)
                # a PUT's figure is the request length the upstream read: head and body
                if transfer.status != 200 or transfer.bytes < size or (not put and transfer.bytes != size):
                    raise RuntimeError(f"{operation} {url}: status {transfer.status}, {transfer.bytes} of {size} bytes")
                if transfer.cipher:
                    ciphers.add(transfer.cipher)
                workload = f"{size / MIB:.0f} MiB {operation} ({listener})"
                sample = Sample(size / MIB / transfer.seconds, size / GIB, transfer.seconds, cost)
                samples.setdefault((route.name, workload), []).append(sample)
    return samples, ciphers


# ---- small objects ------------------------------------------------------------------------------


def threads_for(connections: int) -> int:
    return 1 if connections == 1 else 2


def small_rounds(
    routes: list[Route], origin_pids: Callable[[], list[int]], scripts: dict[str, Path], connections: list[int], rounds: int,
    seconds: float, operations: list[str], listener: str,
) -> Samples:
    samples: Samples = {}
    for route in routes:
        for operation in operations:
            wrk(f"{route.base}/{BUCKET}/{'small.bin' if operation == 'GET' else 'put.bin'}", 16, 2, 1.0, scripts[operation])
    for operation in operations:
        for count in connections:
            for round_number in range(rounds):
                for route in rotated(routes, round_number):
                    meter = CpuMeter(route.pids, origin_pids)
                    target = f"{route.base}/{BUCKET}/{'small.bin' if operation == 'GET' else 'put.bin'}"
                    run, cost = meter.measure(lambda: wrk(target, count, threads_for(count), seconds, scripts[operation]))
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


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 rounds, 1 s wrk runs, 128 MiB objects, a 1 GiB memory run")
    parser.add_argument("--rounds", type=int, help="rounds per workload; every round runs each path once (default 5)")
    parser.add_argument("--size-mib", type=int, help="object size of the large-object rounds (default 512)")
    parser.add_argument("--duration", type=float, help="seconds of each wrk run (default 3)")
    parser.add_argument("--memory-gib", type=float, help="transfer size of the memory measurement (default 5)")
    parser.add_argument("--connections", default="1,16,64", help="wrk concurrencies of the small-object rounds")
    parser.add_argument("--operations", default="PUT,GET", help="operations of the large- and small-object rounds")
    parser.add_argument("--workloads", default="large,small,memory")
    parser.add_argument("--listeners", default="plain,tls")
    parser.add_argument("--no-reference", action="store_true", help="leave MinIO's reference configuration out")
    parser.add_argument("--candidate", action="append", default=[], metavar="SPEC")
    args = parser.parse_args()
    quick = {"rounds": 2, "size_mib": 128, "duration": 1.0, "memory_gib": 1.0}
    full = {"rounds": 5, "size_mib": 512, "duration": 3.0, "memory_gib": 5.0}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main() -> int:
    args = arguments()
    workloads, listeners = set(args.workloads.split(",")), args.listeners.split(",")
    connections = [int(c) for c in args.connections.split(",")]
    operations = args.operations.split(",")
    size, memory_size = args.size_mib * MIB, int(args.memory_gib * GIB)
    candidates = [parse_candidate(spec) for spec in args.candidate]
    limit = f"{max(6, int(args.memory_gib) + 1)}g"
    version = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip().split("/")[-1]
    report: list[str] = [
        f"nginx {version} (proxies and upstream), {CORES} cores, load average {os.getloadavg()[0]:.1f} at the start; "
        f"{' '.join(sys.argv[1:]) or 'defaults'}"
    ]
    for number, spec in enumerate(args.candidate, 1):
        report.append(f"c{number}: {spec}")
    every_sample: Samples = {}
    names: list[str] = []

    with tempfile.TemporaryDirectory(prefix="bench-proxy-") as scratch, contextlib.ExitStack() as running:
        root = Path(scratch)
        material = throwaway_certificate(ORIGIN_ADDRESS, addresses=(REFERENCE_ADDRESS,))
        (root / "origin.crt").write_text(material.certificate)
        (root / "origin.key").write_text(material.key)
        tls_files = (root / "origin.crt", root / "origin.key")
        www = root / "www"
        (www / BUCKET).mkdir(parents=True)
        random_file(www / BUCKET / "small.bin", SMALL)
        scripts = {"GET": wrk_script(root / "get.lua"), "PUT": wrk_script(root / "put.lua", SMALL)}
        source = www / BUCKET / "object.bin"
        if "large" in workloads:
            random_file(source, size)
        if "memory" in workloads:
            with (www / BUCKET / "memory.bin").open("wb") as out:
                out.truncate(memory_size)
        origin = running.enter_context(started(NginxOrigin(root / "origin", www, size + MIB, tls_files, edge_ssl_settings())))

        routes: dict[str, list[Route]] = {}
        ours_of: dict[str, TunedProxy] = {}
        for listener in listeners:
            tls = listener == "tls"
            upstreams = all_upstreams_at(origin.endpoint(False))
            ours = running.enter_context(started(TunedProxy(root / f"ours-{listener}", lab_stack(tls=tls, max_body_size=limit), upstreams)))
            ours_of[listener] = ours
            chosen = [
                Route("direct", f"{'https' if tls else 'http'}://{origin.endpoint(tls)}", list),
                Route("ours", ours.url("s3").rstrip("/"), ours.pids),
            ]
            for number, (buffer_changes, runtime_changes, edits) in enumerate(candidates, 1):
                candidate = running.enter_context(started(TunedProxy(
                    root / f"c{number}-{listener}", lab_stack(tls=tls, max_body_size=limit), upstreams,
                    dataclasses.replace(ProxyBuffers(), **buffer_changes),  # type: ignore[arg-type]
                    runtime_changes=runtime_changes, edits=edits,
                )))
                chosen.append(Route(f"c{number}", candidate.url("s3").rstrip("/"), candidate.pids))
            if not args.no_reference:
                reference = running.enter_context(started(ReferenceProxy(
                    root / f"reference-{listener}", origin.endpoint(False), tls_files if tls else None,
                    edge_ssl_settings() if tls else "",
                )))
                chosen.append(Route("reference", reference.url(tls), reference.pids))
            routes[listener] = chosen
            names = [route.name for route in chosen]
            if tls:
                report.append(
                    f"TLS negotiated with OpenSSL's client defaults (as wrk and curl): ours {negotiated(PROXY_ADDRESS, ours.s3_port)}, "
                    f"direct {negotiated(ORIGIN_ADDRESS, origin.tls_port)}"
                )

        if "memory" in workloads:
            # first, on proxies that have moved nothing yet: the growth is what one transfer holds
            report += ["", f"### Resident memory of our nginx (master and workers) over {args.memory_gib:g} GiB, from start-up", ""]
            report += ["| listener | transfer | MiB/s | before MiB | peak MiB | growth MiB | temporary files |", "|---|---|---|---|---|---|---|"]
            for listener in listeners:
                ours = ours_of[listener]
                base = ours.url("s3").rstrip("/")
                for operation in ("PUT", "GET"):
                    url = f"{base}/{BUCKET}/" + ("upload/memory" if operation == "PUT" else "memory.bin")
                    upload = www / BUCKET / "memory.bin" if operation == "PUT" else None
                    before, peak, transfer = peak_resident_during(ours.pids(), lambda: curl_transfer(url, upload))
                    assert isinstance(transfer, Transfer) and transfer.status == 200 and transfer.bytes >= memory_size, transfer
                    spooled = ours.spooled()
                    report.append(
                        f"| {listener} | {operation} | {memory_size / MIB / transfer.seconds:.0f} | {before / 1024:.1f} | "
                        f"{peak / 1024:.1f} | {(peak - before) / 1024:.1f} | {len(spooled) or 'none'} |"
                    )
        if "large" in workloads:
            for listener in listeners:
                samples, ciphers = large_rounds(routes[listener], origin.pids, source, args.rounds, operations, listener)
                every_sample.update(samples)
                report += ["", f"### Large objects, {listener} listener, median (range) of {args.rounds} rounds", ""]
                report += table(samples, names, list(dict.fromkeys(w for _, w in samples)), "MiB/s", "GiB", 1024)
                if ciphers:
                    report.append(f"\nnegotiated (curl): {', '.join(sorted(ciphers))}")
        if "small" in workloads:
            for listener in listeners:
                samples = small_rounds(
                    routes[listener], origin.pids, scripts, connections, args.rounds, args.duration, operations, listener
                )
                every_sample.update(samples)
                report += ["", f"### Small objects, {listener} listener, {args.duration:g} s wrk runs, median (range) of {args.rounds} rounds", ""]
                report += table(samples, names, list(dict.fromkeys(w for _, w in samples)), "req/s", "1000 req", 1000)
        spooled = [line for ours in ours_of.values() for line in ours.spooled()]
        report.append(f"\ntemporary files written by our proxy over the whole run: {len(spooled) or 'none'}")
        report += [f"  {line}" for line in spooled[:5]]
        if every_sample:
            report += ["", "### The bar (medians of the pairwise figures)", "", "| bar | figure | met |", "|---|---|---|"]
            report += [f"| {bar.what} | {bar.figure} | {'yes' if bar.met else '**no**'} |" for bar in bars(every_sample, names)]
        report.append(f"\nload average {os.getloadavg()[0]:.1f} at the end")
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
