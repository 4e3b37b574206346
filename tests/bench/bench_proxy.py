"""Benchmark (not a test): large-object throughput through the rendered edge proxy versus direct.

Streams a large object (default 1 GiB) with curl, PUT then GET, to a stand-in upstream, once
directly and once through real nginx running the rendered configuration, all on loopback; then
uploads 5 GiB through the proxy while sampling the resident memory of every nginx process.

Upstreams (neither is MinIO):
  sink      a minimal HTTP server that drains PUT bodies and sends GET bodies with sendfile(),
            so the proxy's own cost is what differs between the two paths (default)
  seaweed   SeaweedFS's S3 gateway (anonymous access: the figures measure transfer, not signing);
            it stores to disk and is itself the bottleneck on small machines

    sudo .venv/bin/python tests/bench/bench_proxy.py [--upstream sink|seaweed] [--size-gib 1] [--rounds 5] [--memory-gib 5]

Numbers depend on the machine (CPU shared by curl, nginx and the upstream); compare the ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from infra.edge import ProxyBuffers  # noqa: E402
from tests.lab.proxy_lab import (  # noqa: E402
    STREAM_STAND_IN_ADDRESS,
    LabProxy,
    all_upstreams_at,
    free_port,
    lab_stack,
    running_proxy,
    running_seaweed,
    stop,
    wait_for_port,
)

GIB = 1024**3
BUCKET = "bench"


def curl(*args: str) -> tuple[int, float]:
    """HTTP status and seconds of one transfer."""
    result = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-H", "Expect:", "-w", "%{http_code} %{time_total}", *args],
        capture_output=True, text=True, check=True, timeout=1800,
    )
    status, seconds = result.stdout.split()
    return int(status), float(seconds)


def transfer(base: str, source: Path, key: str) -> tuple[float, float]:
    """Seconds of one PUT and one GET of `source` at `base`/bucket/key."""
    status, put = curl("-T", str(source), f"{base}/{BUCKET}/{key}")
    if status != 200:
        raise RuntimeError(f"PUT {base}/{BUCKET}/{key} answered {status}")
    status, get = curl(f"{base}/{BUCKET}/{key}")
    if status != 200:
        raise RuntimeError(f"GET {base}/{BUCKET}/{key} answered {status}")
    return put, get


def resident_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def peak_memory_during(proxy: LabProxy, action: threading.Thread) -> tuple[int, int]:
    """Resident memory of nginx (master and workers, KiB) before `action`, and its peak while it runs."""
    assert proxy.process is not None
    pids = [proxy.process.pid, *proxy.worker_pids()]
    before = resident_kib(pids)
    peak = before
    action.start()
    while action.is_alive():
        peak = max(peak, resident_kib(pids))
        time.sleep(0.02)
    action.join()
    return before, peak


def serve_sink(address: str, port: int, source: Path) -> None:
    """The sink upstream: drains every PUT body, answers every GET with `source` (sendfile)."""
    import socket
    import socketserver

    size = source.stat().st_size

    class Connection(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            sock: socket.socket = self.request
            buffer = bytearray(1 << 20)
            pending = b""
            with source.open("rb") as body:
                while True:
                    while b"\r\n\r\n" not in pending:
                        data = sock.recv(65536)
                        if not data:
                            return
                        pending += data
                    head, _, pending = pending.partition(b"\r\n\r\n")
                    lines = head.decode("latin-1").split("\r\n")
                    method = lines[0].split(" ", 1)[0]
                    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
                    remaining = int(headers.get("content-length", "0")) - len(pending)
                    pending = b""
                    view = memoryview(buffer)
                    while remaining > 0:
                        got = sock.recv_into(view, min(remaining, len(buffer)))
                        if not got:
                            return
                        remaining -= got
                    if method == "GET":
                        sock.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode())
                        sock.sendfile(body, 0, size)
                    else:
                        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True

    with Server((address, port), Connection) as server:
        server.serve_forever()


def random_file(path: Path, size: int) -> Path:
    block = os.urandom(64 * 1024 * 1024)
    with path.open("wb") as out:
        for _ in range(size // len(block)):
            out.write(block)
        out.write(block[: size % len(block)])
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-gib", type=float, default=1.0, help="object size of the throughput rounds")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per path; the median is reported")
    parser.add_argument("--memory-gib", type=float, default=5.0, help="upload size of the memory measurement")
    parser.add_argument("--upstream", choices=("sink", "seaweed"), default="sink")
    defaults = ProxyBuffers()
    parser.add_argument("--body-buffer", default=defaults.body, help="client_body_buffer_size to try")
    parser.add_argument("--response-buffer", default=defaults.response, help="proxy_buffer_size to try")
    parser.add_argument("--serve-sink", nargs=3, metavar=("ADDRESS", "PORT", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_sink:
        address, port, file = args.serve_sink
        serve_sink(address, int(port), Path(file))
        return 0
    size, memory_size = int(args.size_gib * GIB), int(args.memory_gib * GIB)

    with tempfile.TemporaryDirectory(prefix="bench-proxy-") as scratch:
        root = Path(scratch)
        source = random_file(root / "object.bin", size)
        big = root / "big.bin"
        with big.open("wb") as sparse:
            sparse.truncate(memory_size)
        with contextlib.ExitStack() as running:
            if args.upstream == "seaweed":
                seaweed = running.enter_context(running_seaweed(root / "seaweed", gateways=1, verify_signatures=False))
                [endpoint] = seaweed.gateway_endpoints
            else:
                port = free_port(STREAM_STAND_IN_ADDRESS)
                sink = subprocess.Popen(
                    [sys.executable, __file__, "--serve-sink", STREAM_STAND_IN_ADDRESS, str(port), str(source)]
                )
                running.callback(stop, sink)
                wait_for_port(STREAM_STAND_IN_ADDRESS, port, sink)
                endpoint = f"{STREAM_STAND_IN_ADDRESS}:{port}"
            upstreams = all_upstreams_at(endpoint)
            # the default 5g limit, plus room for the memory round's body
            limit = f"{max(5, int(args.memory_gib) + 1)}g"
            buffers = ProxyBuffers(body=args.body_buffer, response=args.response_buffer)
            with running_proxy(root / "nginx", lab_stack(max_body_size=limit), upstreams, buffers) as proxy:
                direct, proxied = f"http://{endpoint}", proxy.url("s3").rstrip("/")
                status, _ = curl("-X", "PUT", f"{direct}/{BUCKET}")
                if status != 200:
                    raise RuntimeError(f"creating bucket {BUCKET} answered {status}")
                transfer(direct, source, "warm-up")
                timings: dict[str, list[tuple[float, float]]] = {"direct": [], "proxy": []}
                for round_number in range(args.rounds):
                    # alternate so that neither path always runs on a warmer cache
                    order = ("direct", "proxy") if round_number % 2 == 0 else ("proxy", "direct")
                    for path in order:
                        base = direct if path == "direct" else proxied
                        timings[path].append(transfer(base, source, f"{path}-{round_number}"))

                upload = threading.Thread(target=lambda: curl("-T", str(big), f"{proxied}/{BUCKET}/memory"))
                before, peak = peak_memory_during(proxy, upload)

    mib = size / 1024**2

    def rate(seconds: list[float]) -> float:
        return mib / statistics.median(seconds)

    put_direct, put_proxy = rate([t[0] for t in timings["direct"]]), rate([t[0] for t in timings["proxy"]])
    get_direct, get_proxy = rate([t[1] for t in timings["direct"]]), rate([t[1] for t in timings["proxy"]])
    print(
        f"upstream {args.upstream}, object {args.size_gib:g} GiB, median of {args.rounds} rounds (MiB/s), "
        f"client_body_buffer_size {args.body_buffer}, proxy_buffer_size {args.response_buffer}"
    )
    print("| transfer | direct | through proxy | ratio |")
    print("|---|---|---|---|")
    print(f"| PUT | {put_direct:.0f} | {put_proxy:.0f} | {put_proxy / put_direct:.2f} |")
    print(f"| GET | {get_direct:.0f} | {get_proxy:.0f} | {get_proxy / get_direct:.2f} |")
    for path, rounds in timings.items():
        spread = ", ".join(f"PUT {mib / put:.0f} / GET {mib / get:.0f}" for put, get in rounds)
        print(f"rounds {path}: {spread}")
    print(
        f"nginx resident memory (master + workers) during a {args.memory_gib:g} GiB upload: "
        f"{before / 1024:.1f} MiB before, {peak / 1024:.1f} MiB peak"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
