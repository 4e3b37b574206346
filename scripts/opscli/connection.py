"""Where the cluster is and who we are: from flags, the environment, or a stack's outputs.

Each setting is taken from the first source that has it: command-line flag, then environment
(OPS_ENDPOINT, OPS_ACCESS_KEY, OPS_SECRET_KEY), then the stack's outputs (`--stack S` runs
`pulumi stack output --json --show-secrets`, `--outputs-file F` reads the same JSON from a file).
The secret key is never a flag: command lines are visible to every user of the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import certifi
import urllib3
from minio import Minio, MinioAdmin
from minio.credentials.providers import StaticProvider
from minio.error import InvalidResponseError, MinioAdminException, S3Error, ServerError

from opscli.failures import (
    AccessDeniedError,
    ConfigurationError,
    NotFoundError,
    OpsError,
    UnreachableError,
)

ENV_ENDPOINT = "OPS_ENDPOINT"
ENV_ACCESS_KEY = "OPS_ACCESS_KEY"
ENV_SECRET_KEY = "OPS_SECRET_KEY"

# S3 error codes that mean "these credentials are wrong" or "may not do this"
_BAD_CREDENTIALS = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"}
_DENIED = {"AccessDenied", "AllAccessDisabled"}


@dataclass(frozen=True)
class Connection:
    url: str
    """http(s)://host:port of the S3 API."""
    access_key: str
    secret_key: str = field(repr=False)
    verify_tls: bool = True
    ca_file: str | None = None
    extra_ca_pem: str | None = field(default=None, repr=False)
    """A certificate to trust besides the system's: the stack's own, when it signed itself (dev, staging)."""
    source: str = "flags"

    @property
    def secure(self) -> bool:
        return urlsplit(self.url).scheme == "https"

    @property
    def netloc(self) -> str:
        return urlsplit(self.url).netloc

    def _http(self) -> urllib3.PoolManager:
        trusted = self.ca_file or os.environ.get("SSL_CERT_FILE") or certifi.where()
        extra = None if self.ca_file else self.extra_ca_pem
        # few retries and a short connect timeout: an unreachable endpoint should fail in seconds, not minutes
        return urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=10, read=300),
            maxsize=4,
            cert_reqs="CERT_REQUIRED" if self.verify_tls else "CERT_NONE",
            ca_certs=None if extra else trusted,
            ca_cert_data=f"{Path(trusted).read_text()}\n{extra}" if extra else None,
            retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=[502, 503, 504]),
        )

    def s3(self) -> Minio:
        return Minio(
            self.netloc,
            access_key=self.access_key,
            secret_key=self.secret_key,
            secure=self.secure,
            cert_check=self.verify_tls,
            http_client=self._http(),
        )

    def admin(self) -> MinioAdmin:
        return MinioAdmin(
            endpoint=self.netloc,
            credentials=StaticProvider(self.access_key, self.secret_key),
            secure=self.secure,
            cert_check=self.verify_tls,
            http_client=self._http(),
        )


def normalise_url(value: str) -> str:
    """'host:port' or 'http(s)://host[:port]' -> 'scheme://host:port' without a path (S3 is never under a path)."""
    text = value.strip()
    if "://" not in text:
        text = f"http://{text}"
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"endpoint {value!r} is not a URL like 'https://storage.example.com:9443' or 'host:9000'")
    if parts.path not in ("", "/"):
        raise ConfigurationError(
            f"endpoint {value!r} has a path: the S3 API must be served at the root of its listener (SigV4 signs the path)"
        )
    return f"{parts.scheme}://{parts.netloc}"


def stack_outputs(stack: str | None, outputs_file: Path | None, project_root: Path) -> dict[str, Any]:
    """The outputs of a deployed stack, secrets in plain text; empty when neither source is given."""
    if outputs_file is not None:
        try:
            loaded = json.loads(outputs_file.read_text())
        except OSError as error:
            raise ConfigurationError(f"cannot read stack outputs file {outputs_file}: {error.strerror}") from None
        except json.JSONDecodeError as error:
            raise ConfigurationError(f"stack outputs file {outputs_file} is not JSON: {error.msg} (line {error.lineno})") from None
        if not isinstance(loaded, dict):
            raise ConfigurationError(f"stack outputs file {outputs_file} must hold a JSON object")
        return loaded
    if stack is None:
        return {}
    pulumi = shutil.which("pulumi")
    if pulumi is None:
        raise ConfigurationError(
            "the pulumi CLI is not installed: pass --outputs-file, --endpoint/--access-key or the OPS_* variables instead"
        )
    result = subprocess.run(
        [pulumi, "stack", "output", "--json", "--show-secrets", "--stack", stack],
        cwd=project_root,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["no error text"])[-1]
        raise ConfigurationError(f"cannot read the outputs of stack {stack!r}: {reason}")
    parsed: dict[str, Any] = json.loads(result.stdout or "{}")
    return parsed


def resolve_connection(
    *,
    endpoint: str | None,
    access_key: str | None,
    outputs: Mapping[str, Any],
    environ: Mapping[str, str],
    verify_tls: bool = True,
    ca_file: str | None = None,
    stack_label: str = "stack outputs",
) -> Connection:
    """The connection settings, each from the first source that has it (flag, environment, stack outputs)."""
    endpoints = outputs.get("endpoints") or {}
    candidates = {
        "endpoint": [("flag --endpoint", endpoint), (ENV_ENDPOINT, environ.get(ENV_ENDPOINT)), (stack_label, endpoints.get("s3"))],
        "access key": [
            ("flag --access-key", access_key),
            (ENV_ACCESS_KEY, environ.get(ENV_ACCESS_KEY)),
            (stack_label, outputs.get("minioRootUser")),
        ],
        "secret key": [(ENV_SECRET_KEY, environ.get(ENV_SECRET_KEY)), (stack_label, outputs.get("minioRootPassword"))],
    }
    chosen: dict[str, tuple[str, str]] = {}
    missing = []
    for setting, sources in candidates.items():
        found = next(((source, str(value)) for source, value in sources if value), None)
        if found is None:
            missing.append(f"{setting} ({' or '.join(source for source, _ in sources)})")
        else:
            chosen[setting] = found
    if missing:
        raise ConfigurationError(f"no connection settings for: {'; '.join(missing)}")
    return Connection(
        url=normalise_url(chosen["endpoint"][1]),
        access_key=chosen["access key"][1],
        secret_key=chosen["secret key"][1],
        verify_tls=verify_tls,
        ca_file=ca_file,
        extra_ca_pem=outputs.get("tlsCertificate"),
        source=", ".join(sorted({source for source, _ in chosen.values()})),
    )


def _root_cause(error: BaseException) -> str:
    reason = getattr(error, "reason", None) or error
    text = str(reason)
    for marker in ("Connection refused", "Name or service not known", "timed out", "No route to host", "certificate verify failed"):
        if marker in text:
            return marker.lower()
    return text.split(": ", 1)[-1][:160]


@contextmanager
def explained(connection: Connection, doing: str) -> Iterator[None]:
    """Turn SDK and network exceptions into one sentence for the operator (an OpsError with its exit code)."""
    try:
        yield
    except OpsError:
        raise
    except S3Error as error:
        if error.code in _BAD_CREDENTIALS:
            raise AccessDeniedError(
                f"{connection.url} rejected the credentials of access key {connection.access_key!r} "
                f"(unknown access key or wrong secret key: {error.code})"
            ) from None
        if error.code in _DENIED:
            raise AccessDeniedError(
                f"access key {connection.access_key!r} may not {doing} on {connection.url} ({error.code})"
            ) from None
        if error.code == "NoSuchBucket":
            raise NotFoundError(
                f"bucket {error.bucket_name!r} does not exist on {connection.url} (create it with 'sync-buckets')"
            ) from None
        if error.code in ("NoSuchKey", "NoSuchVersion"):
            raise NotFoundError(f"object {error.object_name!r} does not exist in bucket {error.bucket_name!r}") from None
        raise OpsError(f"{connection.url} could not {doing}: {error.code}: {error.message}") from None
    except MinioAdminException as error:
        status, body = str(error._code), str(error._body)
        if status in ("401", "403"):
            raise AccessDeniedError(
                f"{connection.url} refused to let access key {connection.access_key!r} {doing} (HTTP {status}; admin calls need an admin policy)"
            ) from None
        if status == "404":
            # MinIO's admin API answers JSON with a Code; anything else at that path is not MinIO
            if _admin_code(body) is None:
                raise OpsError(f"{connection.url} has no MinIO admin API (HTTP 404), so it cannot {doing}; is it a MinIO server?") from None
            raise NotFoundError(f"{connection.url} could not {doing}: {_admin_message(body)}") from None
        raise OpsError(f"{connection.url} could not {doing}: HTTP {status} {_admin_message(body)}") from None
    except urllib3.exceptions.SSLError as error:
        raise UnreachableError(
            f"TLS with {connection.url} failed ({_root_cause(error)}): pass --ca-file with the stack's certificate, or --insecure for a dev stack"
        ) from None
    except (urllib3.exceptions.HTTPError, ConnectionError) as error:
        raise UnreachableError(f"cannot reach {connection.url} to {doing}: {_root_cause(error)}") from None
    except InvalidResponseError as error:
        raise UnreachableError(f"{connection.url} does not answer like an S3 server ({str(error).splitlines()[0][:160]})") from None
    except ServerError as error:
        raise UnreachableError(f"{connection.url} could not {doing}: server error HTTP {error.status_code}") from None


def _admin_code(body: str) -> str | None:
    try:
        parsed = json.loads(body)
    except json.JSONDecodeError:
        return None
    return str(parsed["Code"]) if isinstance(parsed, dict) and parsed.get("Code") else None


def _admin_message(body: str) -> str:
    try:
        parsed = json.loads(body)
    except json.JSONDecodeError:
        return body.strip()[:200]
    if isinstance(parsed, dict):
        return str(parsed.get("Message") or parsed.get("message") or parsed)[:200]
    return body.strip()[:200]
