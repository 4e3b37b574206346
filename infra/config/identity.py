"""The identity tier's settings: Keycloak (SSO for the MinIO console) and its PostgreSQL database."""

from __future__ import annotations

from pydantic import Field

from infra.config.base import DnsLabel, ImageRef, MemoryMb, Settings

DEFAULT_KEYCLOAK_IMAGE = "quay.io/keycloak/keycloak:26.4.2"
DEFAULT_POSTGRES_IMAGE = "postgres:16.10-alpine"


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
