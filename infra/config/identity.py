"""The identity tier's settings: Keycloak (SSO for the MinIO console) and its PostgreSQL database."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import Field, field_validator

from infra.config.base import DnsLabel, ImageRef, MemoryMb, Settings
from infra.config.edge import Ipv4Cidr
from infra.config.images import KEYCLOAK, POSTGRES

DEFAULT_KEYCLOAK_IMAGE = KEYCLOAK.reference
# a minor update only: a new PostgreSQL major needs a dump and restore, not a new tag
DEFAULT_POSTGRES_IMAGE = POSTGRES.reference

# The realm's password policy (Keycloak's `length(N) and notUsername`). Keycloak enforces it when it
# imports the realm, so a shorter bootstrap password would abort the import on the first start.
BOOTSTRAP_PASSWORD_KEY = "keycloakBootstrapPassword"
PASSWORD_MIN_LENGTH = 12
PASSWORD_POLICY = f"length({PASSWORD_MIN_LENGTH}) and notUsername"
# MinIO's STS refuses a session shorter than 900 s (DurationSeconds; internal/config/identity/openid)
MIN_SESSION_MINUTES = 15


def password_policy_problem(password: str, username: str) -> str | None:
    """Why Keycloak's realm password policy would refuse `password` for `username`, if it would."""
    # Java's String.length() counts UTF-16 code units, so a character outside the BMP counts twice
    length = len(password.encode("utf-16-le")) // 2
    if length < PASSWORD_MIN_LENGTH:
        return f"is {length} characters long; the realm's password policy needs at least {PASSWORD_MIN_LENGTH}"
    if password.lower() == username.lower():
        return "equals the bootstrap username, which the realm's password policy (notUsername) refuses"
    return None


class IdentitySettings(Settings):
    keycloak_image: ImageRef = DEFAULT_KEYCLOAK_IMAGE
    postgres_image: ImageRef = DEFAULT_POSTGRES_IMAGE
    realm: DnsLabel = Field("minio-platform", description="Keycloak realm holding the MinIO console client and its users")
    keycloak_memory_mb: MemoryMb = 1536
    postgres_memory_mb: MemoryMb = 512
    bootstrap_username: DnsLabel = Field(
        "console-admin", description="realm user with policy consoleAdmin, created on dev and staging only"
    )
    sso_display_name: str = Field(
        "Keycloak", min_length=1, max_length=40, pattern=r"^[A-Za-z0-9 ._()-]+$", description="label of the console's SSO button"
    )
    session_minutes: int = Field(
        60,
        ge=MIN_SESSION_MINUTES,
        le=720,
        description="console session length: the minio-console tokens' lifespan and Keycloak's SSO session, "
        "and MINIO_BROWSER_SESSION_DURATION",
    )
    admin_allow_from: tuple[Ipv4Cidr, ...] = Field(
        (),
        description="client ranges the web listener admits to Keycloak's admin console (/auth/admin/, /auth/realms/master/); "
        "empty: nobody",
    )

    @field_validator("realm")
    @classmethod
    def _not_the_admin_realm(cls, realm: str) -> str:
        # the master realm is Keycloak's administration realm, which the edge proxy keeps off the internet
        if realm == "master":
            raise ValueError("'master' is Keycloak's administration realm: give the MinIO realm a name of its own")
        return realm

    @property
    def session_seconds(self) -> int:
        return self.session_minutes * 60

    @property
    def console_session_duration(self) -> str:
        """The session length as a Go duration, as MINIO_BROWSER_SESSION_DURATION reads it."""
        return f"{self.session_minutes}m"

    def bootstrap_password_problems(self, environment: str, supplied: Mapping[str, object]) -> list[str]:
        """An operator-supplied bootstrap password the realm would refuse (only dev and staging create the user)."""
        password = supplied.get(BOOTSTRAP_PASSWORD_KEY)
        if environment == "prod" or not isinstance(password, str):
            return []
        problem = password_policy_problem(password, self.bootstrap_username)
        if problem is None:
            return []
        return [
            f"{BOOTSTRAP_PASSWORD_KEY}: the supplied password {problem}; Keycloak would abort the realm import. "
            f"Set a longer one with 'pulumi config set --secret {BOOTSTRAP_PASSWORD_KEY}', or remove it to have one generated"
        ]
