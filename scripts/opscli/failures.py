"""What can go wrong, as one sentence for the operator and an exit code scripts can rely on."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    UNEXPECTED = 1
    USAGE = 2
    CONFIGURATION = 3
    UNREACHABLE = 4
    ACCESS_DENIED = 5
    NOT_FOUND = 6
    REFUSED = 7
    CHECKSUM_MISMATCH = 8
    TOOL_FAILED = 9


EXIT_CODE_MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "success (for sync-buckets --dry-run: the plan was shown)",
    ExitCode.UNEXPECTED: "unexpected error (a bug or a server answer the command does not know)",
    ExitCode.USAGE: "bad command line (unknown sub-command, missing argument)",
    ExitCode.CONFIGURATION: "missing or invalid settings: connection, stack configuration, policy file",
    ExitCode.UNREACHABLE: "the S3 endpoint cannot be reached (network, TLS, not an S3 server)",
    ExitCode.ACCESS_DENIED: "bad credentials, or the credentials may not do this",
    ExitCode.NOT_FOUND: "a bucket, backup, policy, account or configuration export does not exist (drill: a mirrored "
    "object is missing on the target; purge: nothing matched)",
    ExitCode.REFUSED: "refused to destroy data: non-empty bucket to prune, non-empty database without --force, "
    "a file that exists already",
    ExitCode.CHECKSUM_MISMATCH: "a backup's or configuration export's content does not match its recorded sha256; nothing "
    "was restored or applied (drill: a mirrored object differs from its source)",
    ExitCode.TOOL_FAILED: "pg_dump or psql failed, PostgreSQL unreachable included (its last error lines are shown)",
}


class OpsError(Exception):
    """A failure explained in one sentence; `code` is the process exit code."""

    code: ExitCode = ExitCode.UNEXPECTED

    def __init__(self, sentence: str) -> None:
        super().__init__(sentence)
        self.sentence = sentence


class ConfigurationError(OpsError):
    code = ExitCode.CONFIGURATION


class UnreachableError(OpsError):
    code = ExitCode.UNREACHABLE


class AccessDeniedError(OpsError):
    code = ExitCode.ACCESS_DENIED


class NotFoundError(OpsError):
    code = ExitCode.NOT_FOUND


class RefusedError(OpsError):
    code = ExitCode.REFUSED


class ChecksumMismatchError(OpsError):
    code = ExitCode.CHECKSUM_MISMATCH


class ToolFailedError(OpsError):
    code = ExitCode.TOOL_FAILED
