"""Benchmark (not a test): `scripts/ops mirror` against a plain streamed copy of the same objects (GET from
one S3 server, PUT to the other, one stream, the same part size), as a throughput ratio.

Two SeaweedFS S3 STAND-INS (not MinIO) on 127.0.5.x, like the lab tests:

    .venv/bin/python tests/bench/bench_mirror.py [--small 200] [--large 6] [--large-mib 64] [--runs 3]

Both copies run as their own process, so both include the interpreter's start; the mirror also lists
both buckets and compares before it copies, which is what makes a second run copy nothing (timed
too). Each run copies into a new target whose buckets have had a first write, and the two copies take
turns going first. Peak memory is each process's peak resident set (VmHWM, sampled every 20 ms).
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "lab"), str(ROOT / "tests" / "bench"), str(ROOT / "scripts")]

from bench_backup import watch  # noqa: E402
from ops_servers import S3StandIn, seaweedfs_s3  # noqa: E402

BUCKET = "bench-mirror"
MIB = 1 << 20
PART_MIB = 16


def plain_copy(source_url: str, target_url: str, access_key: str, secret_key: str, bucket: str, target_bucket: str) -> None:
    """Every object of `bucket`, streamed from one server to the other: what the mirror is measured against."""
    from minio import Minio

    source = Minio(source_url.removeprefix("http://"), access_key, secret_key, secure=False)
    target = Minio(target_url.removeprefix("http://"), access_key, secret_key, secure=False)
    for item in source.list_objects(bucket, recursive=True):
        response = source.get_object(bucket, item.object_name or "")
        try:
            target.put_object(target_bucket, item.object_name or "", response, item.size or 0,
                              part_size=PART_MIB * MIB, num_parallel_uploads=1)
        finally:
            response.close()
            response.release_conn()


def timed(command: list[str], env: dict[str, str]) -> tuple[float, int]:
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    (peak,) = watch([process])  # type: ignore[list-item]
    seconds = time.perf_counter() - started
    assert process.returncode == 0, process.stderr.read() if process.stderr else ""
    return seconds, peak


def warm_up(server: S3StandIn, buckets: list[str]) -> None:
    """The stand-in allocates a bucket's volumes on its first write, which neither timed copy should pay."""
    client = server.client()
    for bucket in buckets:
        client.make_bucket(bucket)
        client.put_object(bucket, "warm-up", io.BytesIO(b"x"), 1)


def fill(server: S3StandIn, small: int, large: int, large_mib: int) -> int:
    client = server.client()
    client.make_bucket(BUCKET)
    rng = random.Random(7)
    total = 0
    for index in range(small):
        data = rng.randbytes(64 * 1024)
        client.put_object(BUCKET, f"small/{index:05}", io.BytesIO(data), len(data))
        total += len(data)
    for index in range(large):
        data = rng.randbytes(large_mib * MIB)
        client.put_object(BUCKET, f"large/{index:03}", io.BytesIO(data), len(data), part_size=PART_MIB * MIB)
        total += len(data)
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=200, help="objects of 64 KiB (default 200)")
    parser.add_argument("--large", type=int, default=6, help="large objects (default 6)")
    parser.add_argument("--large-mib", type=int, default=64, help="size of each large object (default 64 MiB)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--plain-copy", nargs=6, metavar="ARG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_copy:
        plain_copy(*args.plain_copy)
        return 0

    python = str(ROOT / ".venv" / "bin" / "python")
    mirror_runs, plain_runs, noop_runs = [], [], []
    with seaweedfs_s3("127.0.5.80") as source:
        total = fill(source, args.small, args.large, args.large_mib)
        for run in range(args.runs):
            # a new target each run: deleted objects keep the stand-in's space until it compacts
            with seaweedfs_s3("127.0.5.81") as target:
                warm_up(target, ["bench-plain", f"copy-{BUCKET}"])
                env = {**os.environ, **source.environ(), "OPS_TARGET_ENDPOINT": target.url,
                       "OPS_TARGET_ACCESS_KEY": target.access_key, "OPS_TARGET_SECRET_KEY": target.secret_key}
                plain = [python, __file__, "--plain-copy", source.url, target.url, source.access_key, source.secret_key,
                         BUCKET, "bench-plain"]
                mirror = [python, "-m", "opscli", "mirror", BUCKET, "--target-bucket-prefix", "copy-",
                          "--part-size-mib", str(PART_MIB), "--no-progress"]
                # taking turns at going first, so neither always meets a server that has just been busy
                if run % 2:
                    plain_runs.append(timed(plain, env))
                    mirror_runs.append(timed(mirror, env))
                else:
                    mirror_runs.append(timed(mirror, env))
                    plain_runs.append(timed(plain, env))
                noop_runs.append(timed(mirror, env))  # the same again: everything is up to date

    objects = args.small + args.large
    plain_seconds = statistics.median(run[0] for run in plain_runs)
    mirror_seconds = statistics.median(run[0] for run in mirror_runs)
    noop_seconds = statistics.median(run[0] for run in noop_runs)
    print(f"{objects} objects, {total / MIB:.0f} MiB ({args.small} x 64 KiB, {args.large} x {args.large_mib} MiB); "
          f"part size {PART_MIB} MiB; median of {args.runs} runs")
    print(f"plain streamed copy     : {plain_seconds:6.2f} s  {total / MIB / plain_seconds:7.1f} MiB/s  "
          f"peak RSS {max(run[1] for run in plain_runs) / 1024:6.1f} MiB")
    print(f"ops mirror (first run)  : {mirror_seconds:6.2f} s  {total / MIB / mirror_seconds:7.1f} MiB/s  "
          f"peak RSS {max(run[1] for run in mirror_runs) / 1024:6.1f} MiB")
    print(f"ops mirror (up to date) : {noop_seconds:6.2f} s  (lists and compares {objects} objects, copies none)")
    ratios = sorted(plain[0] / mirrored[0] for plain, mirrored in zip(plain_runs, mirror_runs))
    print(f"ratio mirror / plain copy: throughput {plain_seconds / mirror_seconds:.2f}x "
          f"(per run, lowest to highest: {', '.join(f'{ratio:.2f}' for ratio in ratios)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
