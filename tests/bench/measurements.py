"""What the proxy benchmark reads off a run: CPU time from /proc, resident memory, curl transfers, wrk runs.

CPU time is each process's user and system time (/proc/<pid>/stat, exited threads included),
read before and after a run; a client's own CPU time comes from its rusage.
"""

from __future__ import annotations

import os
import re
import resource
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

TIMEOUT_SECONDS = 1800
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: Iterable[int]) -> float:
    """User and system time of each process, its threads included (exited ones too), from /proc/<pid>/stat."""
    total = 0
    for pid in pids:
        try:
            # the command name may hold spaces: fields count from the ')' that closes it
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def resident_kib(pids: Iterable[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class Cost:
    """CPU seconds spent during one run by each side of it."""

    proxy: float
    origin: float
    client: float


class CpuMeter:
    """CPU seconds of the proxy's and the origin's processes, and of the client the caller runs, over one run."""

    def __init__(self, proxy: Callable[[], list[int]], origin: Callable[[], list[int]]) -> None:
        self.proxy, self.origin = proxy, origin

    def measure(self, run: Callable[[], object]) -> tuple[object, Cost]:
        proxy_pids, origin_pids = self.proxy(), self.origin()
        before = (cpu_seconds(proxy_pids), cpu_seconds(origin_pids), children_cpu_seconds())
        result = run()
        after = (cpu_seconds(proxy_pids), cpu_seconds(origin_pids), children_cpu_seconds())
        return result, Cost(*(b - a for a, b in zip(before, after)))


@dataclass(frozen=True)
class Transfer:
    seconds: float
    status: int
    bytes: int
    """Body bytes: received by the client (GET) or reported received by the origin (PUT)."""
    cipher: str | None = None


_CIPHER = re.compile(r"SSL connection using (\S+) / (\S+)")


def curl_transfer(url: str, upload: Path | None = None) -> Transfer:
    """One PUT of `upload` (or GET) with curl, body to /dev/null; TLS certificates are not verified (a handshake cost)."""
    command = ["curl", "-sS", "-k", "-o", "/dev/null", "-H", "Expect:", "-w", "%{http_code} %{time_total} %{size_download} %header{x-bench-received}"]
    if url.startswith("https:"):
        command.append("-v")
    if upload is not None:
        command += ["-T", str(upload)]
    result = subprocess.run([*command, url], capture_output=True, text=True, check=True, timeout=TIMEOUT_SECONDS)
    fields = result.stdout.split()
    status, seconds, downloaded = int(fields[0]), float(fields[1]), int(fields[2])
    received = int(fields[3]) if upload is not None and len(fields) > 3 else downloaded
    match = _CIPHER.search(result.stderr)
    return Transfer(seconds, status, received, f"{match[1]} {match[2]}" if match else None)


@dataclass(frozen=True)
class WrkRun:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    failures: int
    """Socket errors and answers of 400 or more: a run with any is not a measurement."""

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


# wrk calls done() once, after the run, with every thread's figures merged: latencies in microseconds
_DONE = """
function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format("bench: %d %d %d %d %d\\n", summary.requests, summary.duration,
      latency:percentile(50), latency:percentile(99), e.connect + e.read + e.write + e.status + e.timeout))
end
"""
_SUMMARY = re.compile(r"^bench: (\d+) (\d+) (\d+) (\d+) (\d+)$", re.M)


def wrk_script(path: Path, put_size: int | None = None) -> Path:
    """wrk's Lua script: a PUT of `put_size` bytes (wrk adds Content-Length) or a GET, and the summary line."""
    request = ""
    if put_size is not None:
        request = f'wrk.method = "PUT"\nwrk.body = string.rep("x", {put_size})\nwrk.headers["Content-Type"] = "application/octet-stream"\n'
    path.write_text(request + _DONE)
    return path


def wrk(url: str, connections: int, threads: int, seconds: float, script: Path) -> WrkRun:
    """One wrk run (whole seconds), read off the summary its script's done() prints."""
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", str(script)]
    result = subprocess.run([*command, url], capture_output=True, text=True, check=True, timeout=seconds + 60)
    summary = _SUMMARY.search(result.stdout)
    if summary is None:
        raise RuntimeError(f"wrk printed no summary:\n{result.stdout}\n{result.stderr}")
    requests, duration_us, p50_us, p99_us, failures = (int(n) for n in summary.groups())
    return WrkRun(requests, duration_us / 1e6, p50_us / 1000, p99_us / 1000, failures)


def peak_resident_during(pids: list[int], action: Callable[[], object]) -> tuple[int, int, object]:
    """Resident memory (KiB) of `pids` before `action`, and its peak while `action` runs (sampled every 20 ms)."""
    before = resident_kib(pids)
    peak = before
    outcome: list[object] = []
    thread = threading.Thread(target=lambda: outcome.append(action()))
    thread.start()
    while thread.is_alive():
        peak = max(peak, resident_kib(pids))
        time.sleep(0.02)
    thread.join()
    return before, peak, outcome[0] if outcome else None


@dataclass(frozen=True)
class Spread:
    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(statistics.median(values), min(values), max(values))

    def ratio(self, digits: int = 2) -> str:
        return f"{self.median:.{digits}f} ({self.low:.{digits}f}-{self.high:.{digits}f})"
