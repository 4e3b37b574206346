"""backup-postgres / restore-postgres / list-backups against real PostgreSQL and an S3 STAND-IN
(SeaweedFS, not MinIO), through the command line as an operator runs it."""

from __future__ import annotations

import hashlib
import io
import resource
from collections.abc import Iterator

import pytest
from minio.commonconfig import REPLACE, CopySource

from ops_servers import S3StandIn, Postgres, postgres_server, run_ops, seaweedfs_s3

pytestmark = pytest.mark.lab

BUCKET = "backups-postgresql"
ROWS = "SELECT id, name, amount::text, created::text FROM accounts ORDER BY id"


@pytest.fixture(scope="module")
def s3() -> Iterator[S3StandIn]:
    with seaweedfs_s3("127.0.5.10") as server:
        server.client().make_bucket(BUCKET)
        yield server


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    with postgres_server("127.0.5.11") as server:
        yield server


@pytest.fixture
def source_database(postgres: Postgres, request: pytest.FixtureRequest) -> str:
    name = f"src_{request.node.name[:40].lower().replace('[', '_').replace(']', '')}"
    postgres.create_database(name)
    postgres.psql(name, """
        CREATE TABLE accounts (id serial PRIMARY KEY, name text NOT NULL, amount numeric(12,2), created timestamptz);
        INSERT INTO accounts (name, amount, created)
          SELECT 'user-' || g || E' quote\\' tab\t ü', g * 1.25, '2026-01-01'::timestamptz + g * interval '1 hour'
          FROM generate_series(1, 5000) AS g;
        CREATE INDEX accounts_name ON accounts (name);
    """)
    return name


def backup(s3: S3StandIn, postgres: Postgres, database: str) -> str:
    result = run_ops(["backup-postgres", "--bucket", BUCKET, *postgres.cli_args(database)], s3.environ())
    assert result.returncode == 0, result.stderr
    return result.stdout.split("s3://", 1)[1].split()[0].split("/", 1)[1]


def test_backup_then_restore_into_an_empty_database_gives_identical_rows(s3: S3StandIn, postgres: Postgres, source_database: str) -> None:
    key = backup(s3, postgres, source_database)
    target = f"{source_database}_copy"
    postgres.create_database(target)

    restored = run_ops(["restore-postgres", key, "--bucket", BUCKET, *postgres.cli_args(target)], s3.environ())

    assert restored.returncode == 0, restored.stderr
    assert postgres.psql(target, ROWS) == postgres.psql(source_database, ROWS)
    assert postgres.psql(target, "SELECT count(*) FROM accounts") == "5000"
    assert postgres.psql(target, "SELECT indexname FROM pg_indexes WHERE indexname = 'accounts_name'") == "accounts_name"


def test_backup_records_the_sha256_of_the_stored_object_and_lists_it(s3: S3StandIn, postgres: Postgres, source_database: str) -> None:
    key = backup(s3, postgres, source_database)
    client = s3.client()
    stored = client.get_object(BUCKET, key).read()
    recorded = client.stat_object(BUCKET, key).metadata["x-amz-meta-sha256"]

    listing = run_ops(["list-backups", "--bucket", BUCKET, "--database", source_database, "--json"], s3.environ())

    assert recorded == hashlib.sha256(stored).hexdigest()
    assert stored[:2] == b"\x1f\x8b", "the object is gzip"
    assert key.startswith(f"{source_database}/") and key.endswith(".sql.gz")
    assert listing.returncode == 0, listing.stderr
    assert f'"sha256": "{recorded}"' in listing.stdout
    leftovers = [o.object_name for o in client.list_objects(BUCKET, prefix=".incoming/", recursive=True)]
    assert leftovers == [], "the upload's staging copy is removed"


def test_a_corrupted_backup_is_refused_before_the_database_is_touched(s3: S3StandIn, postgres: Postgres, source_database: str) -> None:
    key = backup(s3, postgres, source_database)
    client = s3.client()
    original = client.get_object(BUCKET, key).read()
    recorded = client.stat_object(BUCKET, key).metadata["x-amz-meta-sha256"]
    corrupted = bytearray(original)
    corrupted[len(corrupted) // 2] ^= 0xFF
    # same key, same recorded checksum, one flipped byte: what bit rot or tampering looks like
    client.put_object(BUCKET, key, io.BytesIO(bytes(corrupted)), len(corrupted), metadata={"sha256": recorded})
    target = f"{source_database}_victim"
    postgres.create_database(target)
    postgres.psql(target, "CREATE TABLE sentinel (note text); INSERT INTO sentinel VALUES ('untouched')")

    refused = run_ops(["restore-postgres", key, "--force", "--bucket", BUCKET, *postgres.cli_args(target)], s3.environ())

    assert refused.returncode == 8, refused.stderr
    assert "is corrupt" in refused.stderr and "nothing was restored" in refused.stderr
    assert postgres.psql(target, "SELECT note FROM sentinel") == "untouched"
    assert postgres.psql(target, "SELECT count(*) FROM pg_tables WHERE tablename = 'accounts'") == "0"


def test_restore_refuses_a_non_empty_database_without_force(s3: S3StandIn, postgres: Postgres, source_database: str) -> None:
    key = backup(s3, postgres, source_database)
    postgres.psql(source_database, "UPDATE accounts SET name = 'changed after the backup' WHERE id = 1")

    refused = run_ops(["restore-postgres", key, "--bucket", BUCKET, *postgres.cli_args(source_database)], s3.environ())
    forced = run_ops(["restore-postgres", key, "--force", "--bucket", BUCKET, *postgres.cli_args(source_database)], s3.environ())

    assert refused.returncode == 7 and "--force" in refused.stderr
    assert forced.returncode == 0, forced.stderr
    assert postgres.psql(source_database, "SELECT name FROM accounts WHERE id = 1").startswith("user-1 ")


def test_a_backup_without_a_recorded_checksum_is_never_restored(s3: S3StandIn, postgres: Postgres, source_database: str) -> None:
    key = backup(s3, postgres, source_database)
    s3.client().copy_object(BUCKET, key, CopySource(BUCKET, key), metadata={"note": "no checksum"}, metadata_directive=REPLACE)
    target = f"{source_database}_empty"
    postgres.create_database(target)

    refused = run_ops(["restore-postgres", key, "--bucket", BUCKET, *postgres.cli_args(target)], s3.environ())

    assert refused.returncode == 8 and "no recorded sha256" in refused.stderr
    assert postgres.psql(target, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == "0"


def test_missing_bucket_bad_credentials_and_unreachable_endpoint_are_one_sentence_each(
    s3: S3StandIn, postgres: Postgres, source_database: str
) -> None:
    missing = run_ops(["backup-postgres", "--bucket", "no-such-bucket", *postgres.cli_args(source_database)], s3.environ())
    bad = run_ops(["list-backups", "--bucket", BUCKET], {**s3.environ(), "OPS_SECRET_KEY": "wrong-secret-key"})
    unreachable = run_ops(["list-backups", "--bucket", BUCKET], {**s3.environ(), "OPS_ENDPOINT": "http://127.0.5.12:9"})

    assert (missing.returncode, bad.returncode, unreachable.returncode) == (6, 5, 4)
    for result in (missing, bad, unreachable):
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
        assert "Traceback" not in result.stderr


def test_a_failed_pg_dump_leaves_no_backup_behind(s3: S3StandIn, postgres: Postgres) -> None:
    failed = run_ops(["backup-postgres", "--bucket", BUCKET, *postgres.cli_args("no_such_database")], s3.environ())

    assert failed.returncode == 9
    assert "pg_dump failed" in failed.stderr and "no_such_database" in failed.stderr
    names = [o.object_name for o in s3.client().list_objects(BUCKET, recursive=True, include_version=True)]
    assert not any("no_such_database" in (name or "") for name in names)


# the child's address-space limit; the dump below is larger than this after compression
MEMORY_LIMIT_MIB = 128


def _limit_memory() -> None:
    limit = MEMORY_LIMIT_MIB << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def test_a_dump_larger_than_the_process_memory_limit_streams_through(s3: S3StandIn, postgres: Postgres) -> None:
    database = "large_dump"
    postgres.create_database(database)
    # random hex compresses only about 2:1, so the stored object itself outgrows the limit
    postgres.psql(database, """
        CREATE TABLE blobs (id int, payload text);
        INSERT INTO blobs SELECT g, string_agg(md5(random()::text || g || s), '')
          FROM generate_series(1, 9000) AS g, generate_series(1, 1000) AS s GROUP BY g;
    """)
    dump_bytes = int(postgres.psql(database, "SELECT sum(length(payload)) FROM blobs"))
    assert dump_bytes > 2 * (MEMORY_LIMIT_MIB << 20)

    # glibc reserves 64 MiB of address space per thread arena: keep to two so the limit measures our buffers
    result = run_ops(
        ["backup-postgres", "--bucket", BUCKET, "--part-size-mib", "8", "--compression-level", "1", *postgres.cli_args(database)],
        {**s3.environ(), "MALLOC_ARENA_MAX": "2"},
        preexec=_limit_memory,
    )

    assert result.returncode == 0, result.stderr[-2000:]
    key = result.stdout.split("s3://", 1)[1].split()[0].split("/", 1)[1]
    stat = s3.client().stat_object(BUCKET, key)
    assert (stat.size or 0) > MEMORY_LIMIT_MIB << 20, "the stored object is larger than the memory limit"
    assert int(stat.metadata["x-amz-meta-uncompressed-bytes"]) > dump_bytes


def test_a_backup_goes_to_the_next_node_that_answers_when_its_endpoint_does_not(
    s3: S3StandIn, postgres: Postgres, source_database: str
) -> None:
    """As the backup service runs it: OPS_ENDPOINT names minio1, OPS_FALLBACK_ENDPOINTS the other nodes.
    Here the first endpoint has nothing listening and the stand-in is the 'next node'."""
    stopped, also_stopped = "http://127.0.5.12:9", "http://127.0.5.13:9"
    environ = {**s3.environ(), "OPS_ENDPOINT": stopped, "OPS_FALLBACK_ENDPOINTS": f"{also_stopped},{s3.url}"}

    done = run_ops(["backup-postgres", "--bucket", BUCKET, *postgres.cli_args(source_database)], environ)

    assert done.returncode == 0, done.stderr
    key = done.stdout.split("s3://", 1)[1].split()[0].split("/", 1)[1]
    assert s3.client().stat_object(BUCKET, key).size > 0
    passed_over = [line for line in done.stderr.splitlines() if "does not answer, trying the next node" in line]
    assert [line.split()[1] for line in passed_over] == [stopped, also_stopped]

    # none answers: one sentence naming every node tried, the unreachable exit code
    nowhere = run_ops(
        ["backup-postgres", "--bucket", BUCKET, *postgres.cli_args(source_database)],
        {**environ, "OPS_FALLBACK_ENDPOINTS": also_stopped},
    )
    assert nowhere.returncode == 4
    [error] = [line for line in nowhere.stderr.splitlines() if line.startswith("error: ")]
    assert "no node of the cluster answers" in error and "127.0.5.12:9" in error and "127.0.5.13:9" in error

    # a node that answers with a refusal is the run's answer, not a reason to try another
    refused = run_ops(
        ["backup-postgres", "--bucket", BUCKET, *postgres.cli_args(source_database)],
        {**s3.environ(), "OPS_SECRET_KEY": "wrong-secret-key", "OPS_FALLBACK_ENDPOINTS": stopped},
    )
    assert refused.returncode == 5 and "trying the next node" not in refused.stderr
