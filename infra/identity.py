"""The identity tier: Keycloak (SSO for the MinIO console, STS web identity) and its PostgreSQL database.

Keycloak sits on storage-net (the edge proxy reaches it at its fixed address, MinIO fetches the
OIDC discovery document there) and on database-net; PostgreSQL only on database-net. The realm
is imported from a rendered file on Keycloak's first start.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_docker as docker

from infra.config import StackConfig
from infra.container import Attachment, ContainerSpec, Healthcheck
from infra.rendering import RenderedFile, render_template
from infra.secrets import SecretValues
from infra.tier import Tier, TierArgs

KEYCLOAK_HTTP_PORT = 8080
KEYCLOAK_MANAGEMENT_PORT = 9000
KEYCLOAK_RELATIVE_PATH = "/auth"
KEYCLOAK_CONF_FILE = "/opt/keycloak/conf/keycloak.conf"
REALM_IMPORT_FILE = "/opt/keycloak/data/import/realm.json"
KEYCLOAK_ADMIN_USERNAME = "admin"

POSTGRES_PORT = 5432
POSTGRES_DATABASE = "keycloak"
POSTGRES_USER = "keycloak"
POSTGRES_DATA = "/var/lib/postgresql/data"
POSTGRES_PASSWORD_FILE = "/run/secrets/postgres-password"

CONSOLE_CLIENT_ID = "minio-console"
POLICY_CLAIM = "policy"
AUTHORIZATION_SCOPE = "minio-authorization"
MINIO_SCOPES = ("openid", "profile", "email", AUTHORIZATION_SCOPE)
BOOTSTRAP_POLICIES = ("consoleAdmin",)

# Keycloak's image has bash but no HTTP client: a hand-written request over bash's /dev/tcp
KEYCLOAK_READY_CHECK = (
    "{ printf 'HEAD /health/ready HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&0; "
    f"grep -q 'HTTP/1.1 200'; }} 0<>/dev/tcp/127.0.0.1/{KEYCLOAK_MANAGEMENT_PORT}"
)


def keycloak_internal_url(realm: str) -> str:
    """The realm's base URL as MinIO reaches it on storage-net (host name 'keycloak')."""
    return f"http://keycloak:{KEYCLOAK_HTTP_PORT}{KEYCLOAK_RELATIVE_PATH}/realms/{realm}"


@dataclass(frozen=True)
class MinioOpenId:
    """MinIO's MINIO_IDENTITY_OPENID_* settings, matching the realm's minio-console client."""

    config_url: str
    client_id: str
    client_secret: str
    claim_name: str
    scopes: str
    display_name: str


def minio_openid(config: StackConfig, secrets: SecretValues) -> MinioOpenId:
    return MinioOpenId(
        config_url=f"{keycloak_internal_url(config.identity.realm)}/.well-known/openid-configuration",
        client_id=CONSOLE_CLIENT_ID,
        client_secret=secrets.minio_console_client_secret,
        claim_name=POLICY_CLAIM,
        scopes=",".join(MINIO_SCOPES),
        display_name=config.identity.sso_display_name,
    )


def _mapper(name: str, mapper_type: str, **config: str) -> dict[str, Any]:
    return {"name": name, "type": mapper_type, "config": config}


def _attribute(name: str, attribute: str, claim: str, json_type: str = "String", **extra: str) -> dict[str, Any]:
    return _mapper(
        name,
        "oidc-usermodel-attribute-mapper",
        **{
            "user.attribute": attribute,
            "claim.name": claim,
            "jsonType.label": json_type,
            "id.token.claim": "true",
            "access.token.claim": "true",
            "userinfo.token.claim": "true",
            "introspection.token.claim": "true",
            **extra,
        },
    )


_IN_TOKENS = {"access.token.claim": "true", "introspection.token.claim": "true"}

# Importing a realm that declares any client scope skips Keycloak's built-in ones (RealmManager),
# so the built-ins the console client needs are declared here too; `basic` carries `sub`.
BUILT_IN_SCOPES: tuple[dict[str, Any], ...] = (
    {
        "name": "basic",
        "description": "OpenID Connect scope for basic claims",
        "in_token_scope": "false",
        "mappers": [
            _mapper("sub", "oidc-sub-mapper", **_IN_TOKENS),
            _mapper(
                "auth_time",
                "oidc-usersessionmodel-note-mapper",
                **{"user.session.note": "AUTH_TIME", "claim.name": "auth_time", "jsonType.label": "long", "id.token.claim": "true"},
                **_IN_TOKENS,
            ),
        ],
    },
    {
        "name": "profile",
        "description": "OpenID Connect built-in scope: profile",
        "in_token_scope": "true",
        "mappers": [
            _attribute("username", "username", "preferred_username"),
            _attribute("given name", "firstName", "given_name"),
            _attribute("family name", "lastName", "family_name"),
            _mapper("full name", "oidc-full-name-mapper", **{"id.token.claim": "true", "userinfo.token.claim": "true"}, **_IN_TOKENS),
        ],
    },
    {
        "name": "email",
        "description": "OpenID Connect built-in scope: email",
        "in_token_scope": "true",
        "mappers": [
            _attribute("email", "email", "email"),
            _attribute("email verified", "emailVerified", "email_verified", json_type="boolean"),
        ],
    },
    {
        "name": "roles",
        "description": "OpenID Connect scope for user roles in the access token",
        "in_token_scope": "false",
        "mappers": [
            _mapper(
                "realm roles",
                "oidc-usermodel-realm-role-mapper",
                **{"claim.name": "realm_access.roles", "jsonType.label": "String", "multivalued": "true"},
                **_IN_TOKENS,
            ),
            _mapper(
                "client roles",
                "oidc-usermodel-client-role-mapper",
                **{"claim.name": "resource_access.${client_id}.roles", "jsonType.label": "String", "multivalued": "true"},
                **_IN_TOKENS,
            ),
            _mapper("audience resolve", "oidc-audience-resolve-mapper", **_IN_TOKENS),
        ],
    },
    {
        "name": "web-origins",
        "description": "OpenID Connect scope for the allowed web origins in the access token",
        "in_token_scope": "false",
        "mappers": [_mapper("allowed web origins", "oidc-allowed-origins-mapper", **_IN_TOKENS)],
    },
    {
        "name": "acr",
        "description": "OpenID Connect scope for the acr (authentication context class reference) claim",
        "in_token_scope": "false",
        "mappers": [_mapper("acr loa level", "oidc-acr-mapper", **{"id.token.claim": "true"}, **_IN_TOKENS)],
    },
)

AUTHORIZATION_SCOPE_DEFINITION: dict[str, Any] = {
    "name": AUTHORIZATION_SCOPE,
    "description": "MinIO policies of the user, as the 'policy' claim MinIO reads",
    "in_token_scope": "true",
    "mappers": [
        _attribute("minio policy", POLICY_CLAIM, POLICY_CLAIM, multivalued="true", **{"aggregate.attrs": "true"})
    ],
}

_EVERYONE = {"view": ["admin", "user"], "edit": ["admin", "user"]}

# `policy` is declared (not merely tolerated as an unmanaged attribute): Keycloak 24+ drops
# undeclared attributes, and only admins may edit it; with unmanagedAttributePolicy ENABLED a
# user could grant himself consoleAdmin from the account console.
USER_PROFILE: dict[str, Any] = {
    "attributes": [
        {
            "name": "username",
            "displayName": "${username}",
            "validations": {"length": {"min": 3, "max": 255}, "username-prohibited-characters": {}, "up-username-not-idn-homograph": {}},
            "permissions": _EVERYONE,
            "multivalued": False,
        },
        {
            "name": "email",
            "displayName": "${email}",
            "validations": {"email": {}, "length": {"max": 255}},
            "permissions": _EVERYONE,
            "multivalued": False,
        },
        {
            "name": "firstName",
            "displayName": "${firstName}",
            "validations": {"length": {"max": 255}, "person-name-prohibited-characters": {}},
            "permissions": _EVERYONE,
            "multivalued": False,
        },
        {
            "name": "lastName",
            "displayName": "${lastName}",
            "validations": {"length": {"max": 255}, "person-name-prohibited-characters": {}},
            "permissions": _EVERYONE,
            "multivalued": False,
        },
        {
            "name": POLICY_CLAIM,
            "displayName": "MinIO policies",
            "validations": {"length": {"min": 1, "max": 128}},
            "permissions": {"view": ["admin", "user"], "edit": ["admin"]},
            "multivalued": True,
        },
    ],
    "groups": [],
    "unmanagedAttributePolicy": "ADMIN_EDIT",
}


def realm_context(config: StackConfig, secrets: SecretValues) -> dict[str, Any]:
    urls = config.edge.public_urls(config.environment)
    web_origin = urls.web
    scopes = [*BUILT_IN_SCOPES, AUTHORIZATION_SCOPE_DEFINITION]
    default_scopes = [scope["name"] for scope in BUILT_IN_SCOPES]
    return {
        "realm": config.identity.realm,
        "display_name": f"MinIO platform ({config.name})",
        "default_scopes": default_scopes,
        "client_scopes": scopes,
        "client": {
            "id": CONSOLE_CLIENT_ID,
            "secret": secrets.minio_console_client_secret,
            "console_url": urls.console,
            # MinIO's console callback is MINIO_BROWSER_REDIRECT_URL + /oauth_callback
            "redirect_uris": [f"{urls.console}/oauth_callback", f"{urls.console}/*"],
            "web_origins": [web_origin],
            "post_logout_redirect_uris": f"{urls.console}/*",
            "default_scopes": [*default_scopes, AUTHORIZATION_SCOPE],
        },
        # Keycloak stores the user profile as JSON text inside the realm document
        "user_profile": json.dumps(USER_PROFILE, separators=(",", ":")),
        "bootstrap_user": None
        if config.is_prod
        else {
            "username": config.identity.bootstrap_username,
            "password": secrets.keycloak_bootstrap_password,
            "policies": list(BOOTSTRAP_POLICIES),
        },
    }


def _properties_value(value: str) -> str:
    """keycloak.conf is read as a properties file, where a backslash escapes."""
    return value.replace("\\", "\\\\")


def keycloak_conf_context(config: StackConfig, secrets: SecretValues) -> dict[str, Any]:
    return {
        "stack": config.name,
        "db": {
            "url": f"jdbc:postgresql://postgres:{POSTGRES_PORT}/{POSTGRES_DATABASE}",
            "username": POSTGRES_USER,
            "password": _properties_value(secrets.postgres_password),
        },
        "http_port": KEYCLOAK_HTTP_PORT,
        "relative_path": KEYCLOAK_RELATIVE_PATH,
        "public_url": config.edge.public_urls(config.environment).keycloak,
        "management_port": KEYCLOAK_MANAGEMENT_PORT,
        "admin": {"username": KEYCLOAK_ADMIN_USERNAME, "password": _properties_value(secrets.keycloak_admin_password)},
    }


def keycloak_files(config: StackConfig, secrets: SecretValues) -> list[RenderedFile]:
    return [
        RenderedFile(
            "keycloak/keycloak.conf",
            KEYCLOAK_CONF_FILE,
            render_template("keycloak/keycloak.conf.j2", **keycloak_conf_context(config, secrets)),
            secret=True,
        ),
        # holds the client secret and the bootstrap password
        RenderedFile(
            "keycloak/realm.json",
            REALM_IMPORT_FILE,
            render_template("keycloak/realm.json.j2", **realm_context(config, secrets)),
            secret=True,
        ),
    ]


def postgres_files(config: StackConfig, secrets: SecretValues) -> list[RenderedFile]:
    return [RenderedFile("postgres/password", POSTGRES_PASSWORD_FILE, secrets.postgres_password, secret=True)]


def identity_files(config: StackConfig, secrets: SecretValues) -> list[RenderedFile]:
    return keycloak_files(config, secrets) + postgres_files(config, secrets)


def keycloak_command(config: StackConfig) -> list[str]:
    # production mode on prod; dev mode elsewhere (relaxed hostname checks, no theme caching)
    return ["start" if config.is_prod else "start-dev", "--import-realm"]


class IdentityArgs(TierArgs):
    """The identity tier needs nothing beyond the stack context."""


class Identity(Tier):
    keycloak: docker.Container
    postgres: docker.Container

    def __init__(self, name: str, args: IdentityArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("minio-platform:identity:Identity", name, args, opts)
        segments = self.stack.segments
        settings = self.config.identity
        # Keycloak's users and sessions outlive every update; on prod (or when asked) a destroy too
        self.database_volume = self.volume("postgres-data", "postgres")

        self.postgres = self.container(
            ContainerSpec(
                service="postgres",
                name="postgres",
                image=self.image("postgres-image", settings.postgres_image),
                envs=[
                    f"POSTGRES_DB={POSTGRES_DATABASE}",
                    f"POSTGRES_USER={POSTGRES_USER}",
                    f"POSTGRES_PASSWORD_FILE={POSTGRES_PASSWORD_FILE}",
                ],
                uploads=self.secret_uploads(postgres_files),
                volumes=[docker.ContainerVolumeArgs(volume_name=self.database_volume.name, container_path=POSTGRES_DATA)],
                networks=[
                    Attachment(
                        segments.database.network, aliases=["postgres"], ipv4_address=segments.database.address("postgres")
                    )
                ],
                # over TCP: during first-start initialisation the server listens on its socket only
                healthcheck=Healthcheck(
                    ["CMD", "pg_isready", "-h", "127.0.0.1", "-p", str(POSTGRES_PORT), "-U", POSTGRES_USER, "-d", POSTGRES_DATABASE]
                ),
                memory_mb=settings.postgres_memory_mb,
                stop_grace_seconds=60,
            )
        )
        self.keycloak = self.container(
            ContainerSpec(
                service="keycloak",
                name="keycloak",
                image=self.image("keycloak-image", settings.keycloak_image),
                command=keycloak_command(self.config),
                uploads=self.secret_uploads(keycloak_files),
                networks=[
                    Attachment(
                        segments.storage.network, aliases=["keycloak"], ipv4_address=segments.storage.address("keycloak")
                    ),
                    Attachment(
                        segments.database.network, aliases=["keycloak"], ipv4_address=segments.database.address("keycloak")
                    ),
                ],
                healthcheck=Healthcheck(["CMD", "bash", "-c", KEYCLOAK_READY_CHECK], start_period="2m0s", retries=10),
                memory_mb=settings.keycloak_memory_mb,
            ),
            depends_on=[self.postgres],
        )
        self.register_outputs({"keycloak": self.keycloak.name, "postgres": self.postgres.name})
