"""Where the cluster is and who we are: from flags, the environment, or a stack's outputs.

Each setting is taken from the first source that has it: command-line flag, then environment
(OPS_ENDPOINT, OPS_ADMIN_ENDPOINT, OPS_ACCESS_KEY, OPS_SECRET_KEY), then the stack's outputs
(`--stack S` runs `pulumi stack output --json --show-secrets`, `--outputs-file F` reads the same
JSON from a file). From the outputs the CLI signs in as its own MinIO user, ops-admin, never as
root. The secret key is never a flag: command lines are visible to every user of the machine.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import traceback
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import certifi
import minio
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
ENV_ADMIN_ENDPOINT = "OPS_ADMIN_ENDPOINT"
ENV_ACCESS_KEY = "OPS_ACCESS_KEY"
ENV_SECRET_KEY = "OPS_SECRET_KEY"
# the backup and the mirror talk to one node: these are the others, tried in order when it does not answer
ENV_FALLBACK_ENDPOINTS = "OPS_FALLBACK_ENDPOINTS"

# the MinIO user the CLI signs in as from stack outputs; `bootstrap` creates it (admin policy)
OPS_ADMIN_USER = "ops-admin"
OPS_ADMIN_SECRET_OUTPUT = "opsAdminSecretKey"

# S3 error codes that mean "these credentials are wrong" or "may not do this"
_BAD_CREDENTIALS = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"}
_DENIED = {"AccessDenied", "AllAccessDisabled"}


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
    admin_url: str | None = None
    """http(s)://host:port for MinIO's admin API (MinioAdmin) when it is not the S3 endpoint: the
    proxy's loopback-only admin listener, `endpoints.minioAdmin`."""

    @property
    def admin_endpoint(self) -> str:
        return self.admin_url or self.url

    @property
    def secure(self) -> bool:
        return urlsplit(self.url).scheme == "https"

    @property
    def netloc(self) -> str:
        return urlsplit(self.url).netloc

    def _http(self, url: str | None = None) -> urllib3.PoolManager:
        trusted = self.ca_file or os.environ.get("SSL_CERT_FILE") or certifi.where()
        extra = None if self.ca_file else self.extra_ca_pem
        host, s3_host = urlsplit(url or self.url).hostname or "", urlsplit(self.url).hostname or ""
        # the loopback admin listener is the same proxy with the same certificate, issued for the S3 host name
        checked_name = s3_host if _is_loopback(host) and not _is_loopback(s3_host) and self.verify_tls else None
        if not self.verify_tls:
            # asked for with --insecure: one warning per request would bury the command's own output
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        # few retries and a short connect timeout: an unreachable endpoint should fail in seconds, not minutes
        return urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=10, read=300),
            maxsize=4,
            cert_reqs="CERT_REQUIRED" if self.verify_tls else "CERT_NONE",
            ca_certs=None if extra else trusted,
            ca_cert_data=f"{Path(trusted).read_text()}\n{extra}" if extra else None,
            assert_hostname=checked_name,
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
        parts = urlsplit(self.admin_endpoint)
        return MinioAdmin(
            endpoint=parts.netloc,
            credentials=StaticProvider(self.access_key, self.secret_key),
            secure=parts.scheme == "https",
            cert_check=self.verify_tls,
            http_client=self._http(self.admin_endpoint),
        )

    def signed_in_as(self, access_key: str, secret_key: str, source: str) -> Connection:
        """The same endpoints and TLS trust with other credentials."""
        return replace(self, access_key=access_key, secret_key=secret_key, source=source)


# the two forms an endpoint takes; 'host:port' alone is read as plain HTTP, as --endpoint's help says
ENDPOINT_FORMS = "'https://host:port' (TLS) or 'http://host:port' (plain HTTP)"


def normalise_url(value: str) -> str:
    """'http(s)://host[:port]' -> 'scheme://host:port' without a path (S3 is never under a path).

    An endpoint without a scheme is refused, naming the two forms: whether it speaks TLS is not
    something to guess (plain HTTP to the TLS listener, or the reverse, only fails later and less clearly).
    """
    text = value.strip()
    if "://" not in text:
        parts = urlsplit(f"//{text}")
        host = parts.hostname or text
        try:
            port = f":{parts.port}" if parts.port else ":PORT"
        except ValueError:
            port = ":PORT"
        raise ConfigurationError(
            f"endpoint {value!r} has no scheme: write 'https://{host}{port}' (TLS) or 'http://{host}{port}' (plain HTTP)"
        )
    parts = urlsplit(text)
    try:
        parts.port
    except ValueError:
        raise ConfigurationError(f"endpoint {value!r} has a port that is not a number from 1 to 65535; write {ENDPOINT_FORMS}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"endpoint {value!r} is not a URL: write {ENDPOINT_FORMS}")
    if parts.path not in ("", "/"):
        raise ConfigurationError(
            f"endpoint {value!r} has a path: the S3 API must be served at the root of its listener (SigV4 signs the path)"
        )
    return f"{parts.scheme}://{parts.netloc}"


def fallback_endpoints(environ: Mapping[str, str]) -> list[str]:
    """OPS_FALLBACK_ENDPOINTS: endpoints of the same cluster, comma-separated, each as --endpoint takes it."""
    listed = [value.strip() for value in environ.get(ENV_FALLBACK_ENDPOINTS, "").split(",") if value.strip()]
    try:
        return [normalise_url(value) for value in listed]
    except ConfigurationError as error:
        raise ConfigurationError(f"{ENV_FALLBACK_ENDPOINTS}: {error.sentence}") from None


def first_answering(candidates: Sequence[Connection], probe: Callable[[Connection], object], log: Callable[[str], None]) -> Connection:
    """The first of `candidates` (one cluster's nodes) that answers `probe`.

    A node that cannot be reached is passed over, with a line in the log; one that answers is chosen
    even when it refuses the probe, so that its own error becomes the run's.
    """
    unreachable: list[str] = []
    for candidate in candidates:
        try:
            with explained(candidate, "answer"):
                probe(candidate)
        except UnreachableError as error:
            unreachable.append(error.sentence)
            if candidate is not candidates[-1]:
                log(f"{candidate.url} does not answer, trying the next node: {error.sentence}")
            continue
        except OpsError:
            pass
        return candidate
    if len(candidates) == 1:
        raise UnreachableError(unreachable[0])
    raise UnreachableError(f"no node of the cluster answers ({'; '.join(unreachable)})")


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
    admin_endpoint: str | None = None,
    signed_in_as: tuple[str, str, str] | None = None,
) -> Connection:
    """The connection settings, each from the first source that has it (flag, environment, stack outputs).

    From the stack outputs the identity is ops-admin with `opsAdminSecretKey`; the root
    credentials the outputs also hold are read only by `bootstrap`, to create ops-admin.
    `signed_in_as` (access key, secret key, where they came from) replaces every credential source.
    """
    endpoints = outputs.get("endpoints") or {}
    from_stack = OPS_ADMIN_USER if outputs.get(OPS_ADMIN_SECRET_OUTPUT) else None
    candidates: dict[str, list[tuple[str, Any]]] = {
        "endpoint": [("flag --endpoint", endpoint), (ENV_ENDPOINT, environ.get(ENV_ENDPOINT)), (stack_label, endpoints.get("s3"))],
        "access key": [
            ("flag --access-key", access_key),
            (ENV_ACCESS_KEY, environ.get(ENV_ACCESS_KEY)),
            (f"{stack_label} ({OPS_ADMIN_USER})", from_stack),
        ],
        "secret key": [
            (ENV_SECRET_KEY, environ.get(ENV_SECRET_KEY)),
            (f"{stack_label} ({OPS_ADMIN_SECRET_OUTPUT})", outputs.get(OPS_ADMIN_SECRET_OUTPUT)),
        ],
    }
    if signed_in_as is not None:
        candidates["access key"] = [(signed_in_as[2], signed_in_as[0])]
        candidates["secret key"] = [(signed_in_as[2], signed_in_as[1])]
    chosen: dict[str, tuple[str, str]] = {}
    missing = []
    for setting, sources in candidates.items():
        found = next(((source, str(value)) for source, value in sources if value), None)
        if found is None:
            missing.append(f"{setting} ({' or '.join(source for source, _ in sources)})")
        else:
            chosen[setting] = found
    if missing:
        hint = ""
        if outputs.get("minioRootUser") and not outputs.get(OPS_ADMIN_SECRET_OUTPUT):
            hint = f" (the outputs have no {OPS_ADMIN_SECRET_OUTPUT}: run 'pulumi up', then 'scripts/ops bootstrap')"
        raise ConfigurationError(f"no connection settings for: {'; '.join(missing)}{hint}")
    # the admin listener, only when the S3 endpoint also came from the stack: never mix two clusters
    admin_sources = [admin_endpoint, environ.get(ENV_ADMIN_ENDPOINT)]
    if chosen["endpoint"][0] == stack_label:
        admin_sources.append(endpoints.get("minioAdmin"))
    admin = next((str(value) for value in admin_sources if value), None)
    if ca_file is not None and not Path(ca_file).is_file():
        raise ConfigurationError(
            f"--ca-file {ca_file}: no such file; give the PEM certificate that signed the endpoint's "
            "(for a stack signing its own: pulumi stack output tlsCertificate > stack-ca.pem)"
        )
    return Connection(
        url=normalise_url(chosen["endpoint"][1]),
        access_key=chosen["access key"][1],
        secret_key=chosen["secret key"][1],
        verify_tls=verify_tls,
        ca_file=ca_file,
        extra_ca_pem=outputs.get("tlsCertificate"),
        source=", ".join(sorted({source for source, _ in chosen.values()})),
        admin_url=normalise_url(admin) if admin else None,
    )


def _root_cause(error: BaseException) -> str:
    reason = getattr(error, "reason", None) or error
    text = str(reason)
    for marker in (
        "Connection refused", "Connection reset by peer", "Name or service not known", "timed out", "No route to host",
        "certificate verify failed",
    ):
        if marker in text:
            return marker.lower()
    return text.split(": ", 1)[-1][:160]


def _endpoint_of(error: BaseException, connection: Connection) -> str:
    """The URL a network error came from: the admin listener or the S3 endpoint."""
    pool = getattr(error, "pool", None)
    if connection.admin_url and pool is not None:
        admin = urlsplit(connection.admin_url)
        if (getattr(pool, "host", None), getattr(pool, "port", None)) == (admin.hostname, admin.port):
            return connection.admin_url
    return connection.url


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
        status, body, where = str(error._code), str(error._body), connection.admin_endpoint
        if status in ("401", "403"):
            raise AccessDeniedError(
                f"{where} refused to let access key {connection.access_key!r} {doing} (HTTP {status}; admin calls need an admin policy)"
            ) from None
        if status == "404":
            # MinIO's admin API answers JSON with a Code; anything else at that path is not MinIO
            if _admin_code(body) is None:
                raise OpsError(f"{where} has no MinIO admin API (HTTP 404), so it cannot {doing}; is it a MinIO server?") from None
            raise NotFoundError(f"{where} could not {doing}: {_admin_message(body)}") from None
        raise OpsError(f"{where} could not {doing}: HTTP {status} {_admin_message(body)}") from None
    except urllib3.exceptions.SSLError as error:
        raise UnreachableError(
            f"TLS with {_endpoint_of(error, connection)} failed ({_root_cause(error)}): "
            "pass --ca-file with the stack's certificate, or --insecure for a dev stack"
        ) from None
    except (urllib3.exceptions.HTTPError, ConnectionError) as error:
        cause = _root_cause(error)
        # plain HTTP sent to a TLS listener: the server hangs up
        hint = _https_hint(connection) if cause == "connection reset by peer" else ""
        raise UnreachableError(f"cannot reach {_endpoint_of(error, connection)} to {doing}: {cause}{hint}") from None
    except InvalidResponseError as error:
        raise UnreachableError(
            f"{connection.url} does not answer like an S3 server ({str(error).splitlines()[0][:160]}){_https_hint(connection)}"
        ) from None
    except (ElementTree.ParseError, ValueError, OSError) as error:
        # an answer the SDK cannot read (S3 XML, the admin API's encrypted replies), or opscli as the admin
        # API's JSON: an HTTP server, but not S3
        if not isinstance(error, json.JSONDecodeError | ElementTree.ParseError) and not _raised_by_sdk(error):
            raise
        raise UnreachableError(
            f"{connection.url} answered, but not like an S3 server, so it could not {doing} ({str(error)[:120]}); "
            f"is it the stack's S3 endpoint (endpoints.s3)?{_https_hint(connection)}"
        ) from None
    except ServerError as error:
        raise UnreachableError(f"{connection.url} could not {doing}: server error HTTP {error.status_code}") from None


def _raised_by_sdk(error: BaseException) -> bool:
    """The exception comes from inside the minio SDK (its XML readers raise ValueError on a foreign answer)."""
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and Path(frames[-1].filename).resolve().is_relative_to(Path(minio.__file__).resolve().parent)


def _https_hint(connection: Connection) -> str:
    return "" if connection.secure else f"; if that port speaks TLS, write https://{connection.netloc}"


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
