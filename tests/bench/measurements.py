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
    """Socket errors and non-2xx answers: a run with any is not a measurement."""

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _latency_ms(text: str, percentile: str) -> float:
    match = re.search(rf"^\s+{percentile}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    if match is None:
        raise RuntimeError(f"wrk printed no {percentile}% latency:\n{text}")
    return float(match[1]) * _UNITS_MS[match[2]]


def wrk(url: str, connections: int, threads: int, seconds: float, script: Path | None = None) -> WrkRun:
    """One wrk run (whole seconds) with its latency distribution."""
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "--timeout", "10s"]
    if script is not None:
        command += ["-s", str(script)]
    result = subprocess.run([*command, url], capture_output=True, text=True, check=True, timeout=seconds + 60)
    out = result.stdout
    summary = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out)
    if summary is None:
        raise RuntimeError(f"wrk printed no summary:\n{out}\n{result.stderr}")
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[summary[3]]
    failures = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    failures += int(non_2xx[1]) if non_2xx else 0
    return WrkRun(int(summary[1]), float(summary[2]) * scale, _latency_ms(out, "50"), _latency_ms(out, "99"), failures)


def put_script(path: Path, size: int) -> Path:
    """wrk's Lua script for PUTs of `size` bytes (wrk adds Content-Length)."""
    path.write_text(f'wrk.method = "PUT"\nwrk.body = string.rep("x", {size})\nwrk.headers["Content-Type"] = "application/octet-stream"\n')
    return path


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
