"""Benchmark (not a test): `scripts/ops backup-postgres` against `pg_dump | gzip > file` on the same
database, as throughput and peak memory ratios.

Runs a real PostgreSQL and the SeaweedFS S3 STAND-IN (not MinIO) on 127.0.5.x, like the lab tests:

    .venv/bin/python tests/bench/bench_backup.py [--rows 400000] [--runs 3]

Peak memory is each process's peak resident set (VmHWM, sampled every 20 ms). pg_dump runs in both pipelines
and is reported apart: the comparison is the compressing, uploading Python process against gzip.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "lab"), str(ROOT / "scripts")]

from ops_servers import postgres_server, seaweedfs_s3  # noqa: E402

BUCKET = "backups-postgresql"


def high_water_kib(pid: int) -> int | None:
    """VmHWM: the peak resident set of the process's own (post-exec) memory."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def watch(processes: list[subprocess.Popen[bytes]]) -> list[int]:
    """Wait for every process, sampling each one's peak RSS (KiB) until it exits."""
    peaks = [0] * len(processes)
    while any(process.poll() is None for process in processes):
        for index, process in enumerate(processes):
            peaks[index] = max(peaks[index], high_water_kib(process.pid) or 0)
        time.sleep(0.02)
    return peaks


def run_measured(command: list[str], env: dict[str, str]) -> tuple[float, int, int]:
    """(seconds, peak RSS in KiB, exit status) of one process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (peak,) = watch([process])
    return time.perf_counter() - started, peak, process.returncode


def pipeline(pg_dump: list[str], target: Path) -> tuple[float, int, int]:
    """`pg_dump | gzip > file`: seconds, gzip's peak RSS, pg_dump's peak RSS (KiB)."""
    started = time.perf_counter()
    with target.open("wb") as out:
        dump = subprocess.Popen(pg_dump, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        gzip = subprocess.Popen(["gzip", "-6"], stdin=dump.stdout, stdout=out)
        assert dump.stdout is not None
        dump.stdout.close()
        gzip_peak, dump_peak = watch([gzip, dump])
    assert gzip.returncode == 0 and dump.returncode == 0
    return time.perf_counter() - started, gzip_peak, dump_peak


def dump_size(pg_dump: list[str]) -> int:
    process = subprocess.Popen(pg_dump, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert process.stdout is not None
    size = sum(len(chunk) for chunk in iter(lambda: process.stdout.read(1 << 20), b""))  # type: ignore[union-attr]
    process.wait()
    return size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=400_000, help="rows of ~500 bytes of mixed text (default 400000: ~200 MiB dump)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    with postgres_server("127.0.5.30") as postgres, seaweedfs_s3("127.0.5.31") as s3:
        s3.client().make_bucket(BUCKET)
        postgres.create_database("bench")
        postgres.psql("bench", f"""
            CREATE TABLE events (id bigint, at timestamptz, kind text, payload text);
            INSERT INTO events SELECT g, now() - g * interval '1 second', 'kind-' || (g % 17),
                   repeat('event ' || g || ' ', 20) || md5(g::text) || md5((g * 7)::text) || repeat(md5(random()::text), 8)
              FROM generate_series(1, {args.rows}) AS g;
        """)
        raw = int(postgres.psql("bench", "SELECT pg_total_relation_size('events')"))
        pg_dump = [f"{postgres.bin_dir}/pg_dump", "-h", postgres.host, "-p", str(postgres.port), "-U", postgres.user,
                   "--format=plain", "--clean", "--if-exists", "--dbname", "bench"]
        ops = [str(ROOT / ".venv" / "bin" / "python"), "-m", "opscli", "backup-postgres", "--no-progress",
               "--bucket", BUCKET, *postgres.cli_args("bench")]
        env = {**os.environ, **s3.environ(), "PYTHONPATH": f"{ROOT}:{ROOT / 'scripts'}"}

        dump_bytes = dump_size(pg_dump)
        ops_runs, pipe_runs = [], []
        with tempfile.TemporaryDirectory() as scratch:
            for _ in range(args.runs):
                pipe_runs.append(pipeline(pg_dump, Path(scratch) / "dump.sql.gz"))
                file_size = (Path(scratch) / "dump.sql.gz").stat().st_size
                seconds, rss, status = run_measured(ops, env)
                assert status == 0, "backup-postgres failed"
                ops_runs.append((seconds, rss))

    ops_seconds = statistics.median(run[0] for run in ops_runs)
    pipe_seconds = statistics.median(run[0] for run in pipe_runs)
    ops_rss = max(run[1] for run in ops_runs)
    gzip_rss = max(run[1] for run in pipe_runs)
    dump_rss = max(run[2] for run in pipe_runs)
    mib = 1 << 20
    print(f"database: {raw / mib:.0f} MiB on disk, dump {dump_bytes / mib:.0f} MiB, gzip -6 -> {file_size / mib:.0f} MiB; "
          f"median of {args.runs} runs")
    print(f"pg_dump | gzip > file : {pipe_seconds:6.2f} s  {dump_bytes / mib / pipe_seconds:7.1f} MiB/s  gzip peak RSS {gzip_rss / 1024:6.1f} MiB")
    print(f"ops backup-postgres   : {ops_seconds:6.2f} s  {dump_bytes / mib / ops_seconds:7.1f} MiB/s  python peak RSS {ops_rss / 1024:6.1f} MiB")
    print(f"pg_dump peak RSS (same in both): {dump_rss / 1024:.1f} MiB")
    print(f"ratio ops / pipeline: throughput {pipe_seconds / ops_seconds:.2f}x, peak memory {ops_rss / gzip_rss:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
