"""The identity tier: Keycloak (SSO for the MinIO console, STS web identity) and its PostgreSQL database.

Keycloak sits on storage-net (the edge proxy reaches it at its fixed address, MinIO fetches the
OIDC discovery document there) and on database-net; PostgreSQL only on database-net. The realm
is imported from a rendered file on Keycloak's first start.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import pulumi
import pulumi_docker as docker

from infra.config import StackConfig
from infra.config.identity import PASSWORD_POLICY
from infra.container import Attachment, ContainerSpec, Healthcheck
from infra.hosts import gateway_url
from infra.rendering import FileOwner, RenderedFile, render_template
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
MINIO_SCOPES = ("openid", "profile", "email")
BOOTSTRAP_POLICIES = ("consoleAdmin",)
# Keycloak's own scopes, which it creates on import only when the realm file declares no client scope
# (RealmManager): then every built-in client (account console, admin console) gets them as well
CONSOLE_DEFAULT_SCOPES = ("basic", "profile", "email", "roles", "web-origins", "acr")
# how long an authorization code stays valid (Keycloak's default accessCodeLifespan, stated in the realm)
AUTHORIZATION_CODE_SECONDS = 60

# Keycloak's image has bash but no HTTP client: a hand-written request over bash's /dev/tcp
KEYCLOAK_READY_CHECK = (
    "{ printf 'HEAD /health/ready HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&0; "
    f"grep -q 'HTTP/1.1 200'; }} 0<>/dev/tcp/127.0.0.1/{KEYCLOAK_MANAGEMENT_PORT}"
)


def keycloak_internal_url(config: StackConfig) -> str:
    """The realm's base URL as MinIO reaches it: on storage-net (host name 'keycloak'), or from a node
    host through the edge proxy's gateway listener on the stack's own host."""
    path = f"{KEYCLOAK_RELATIVE_PATH}/realms/{config.identity.realm}"
    return gateway_url(path) if config.storage.multi_host else f"http://keycloak:{KEYCLOAK_HTTP_PORT}{path}"


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
        config_url=f"{keycloak_internal_url(config)}/.well-known/openid-configuration",
        client_id=CONSOLE_CLIENT_ID,
        client_secret=secrets.minio_console_client_secret,
        claim_name=POLICY_CLAIM,
        scopes=",".join(MINIO_SCOPES),
        display_name=config.identity.sso_display_name,
    )


# on the console client itself, not in a client scope of our own: a realm file that declares any client
# scope gets none of Keycloak's, and the built-in clients are left without default scopes
POLICY_MAPPER: dict[str, Any] = {
    "name": "minio policy",
    "protocol": "openid-connect",
    "protocolMapper": "oidc-usermodel-attribute-mapper",
    "consentRequired": False,
    "config": {
        "user.attribute": POLICY_CLAIM,
        "claim.name": POLICY_CLAIM,
        "jsonType.label": "String",
        "multivalued": "true",
        "aggregate.attrs": "true",
        "id.token.claim": "true",
        "access.token.claim": "true",
        "userinfo.token.claim": "true",
        "introspection.token.claim": "true",
    },
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
    return {
        "realm": config.identity.realm,
        "display_name": f"MinIO platform ({config.name})",
        "password_policy": PASSWORD_POLICY,
        # the console session lasts as long as the ID token (MinIO's STS credentials expire with it).
        # Keycloak cuts every token at the SSO session's end, and the code is exchanged up to a code
        # lifespan after the login: the SSO session outlives the token by that much, or the token comes
        # out seconds short (below MinIO's 900 s minimum at sessionMinutes 15)
        "session_seconds": config.identity.session_seconds,
        "code_seconds": AUTHORIZATION_CODE_SECONDS,
        "sso_session_seconds": config.identity.session_seconds + AUTHORIZATION_CODE_SECONDS,
        "client": {
            "id": CONSOLE_CLIENT_ID,
            "secret": secrets.minio_console_client_secret,
            "console_url": urls.console,
            # MinIO's console callback is MINIO_BROWSER_REDIRECT_URL + /oauth_callback
            "redirect_uris": [f"{urls.console}/oauth_callback", f"{urls.console}/*"],
            "web_origins": [urls.web],
            "post_logout_redirect_uris": f"{urls.console}/*",
            "default_scopes": list(CONSOLE_DEFAULT_SCOPES),
            "mappers": [POLICY_MAPPER],
        },
        # Keycloak stores the user profile as JSON text inside the realm document
        "user_profile": json.dumps(USER_PROFILE, separators=(",", ":")),
        "bootstrap_user": None
        if config.is_prod
        else {
            "username": config.identity.bootstrap_username,
            "password": secrets.keycloak_bootstrap_password,
            "policies": list(BOOTSTRAP_POLICIES),
            # an imported user gets no role unless named here (not even the realm's default roles,
            # whose manage-account the account console needs)
            "realm_roles": [f"default-roles-{config.identity.realm}"],
        },
    }


def _properties_value(value: str) -> str:
    """keycloak.conf is read as a properties file, where a backslash escapes."""
    return value.replace("\\", "\\\\")


@dataclass(frozen=True)
class KeycloakRuntime:
    """Where Keycloak listens and finds its database: the container's by default, loopback in the lab."""

    http_host: str = "0.0.0.0"
    """Stated, not left to Keycloak: start-dev binds localhost unless it sees KC_RUN_IN_CONTAINER."""
    http_port: int = KEYCLOAK_HTTP_PORT
    management_port: int = KEYCLOAK_MANAGEMENT_PORT
    db_host: str = "postgres"
    db_port: int = POSTGRES_PORT


CONTAINER_RUNTIME = KeycloakRuntime()


def keycloak_conf_context(
    config: StackConfig, secrets: SecretValues, runtime: KeycloakRuntime = CONTAINER_RUNTIME
) -> dict[str, Any]:
    return {
        "stack": config.name,
        "db": {
            "url": f"jdbc:postgresql://{runtime.db_host}:{runtime.db_port}/{POSTGRES_DATABASE}",
            "username": POSTGRES_USER,
            "password": _properties_value(secrets.postgres_password),
        },
        "runtime": asdict(runtime),
        "relative_path": KEYCLOAK_RELATIVE_PATH,
        "public_url": config.edge.public_urls(config.environment).keycloak,
        "admin": {"username": KEYCLOAK_ADMIN_USERNAME, "password": _properties_value(secrets.keycloak_admin_password)},
    }


def render_keycloak_conf(config: StackConfig, secrets: SecretValues, runtime: KeycloakRuntime = CONTAINER_RUNTIME) -> str:
    return render_template("keycloak/keycloak.conf.j2", **keycloak_conf_context(config, secrets, runtime))


def render_realm(config: StackConfig, secrets: SecretValues) -> str:
    return render_template("keycloak/realm.json.j2", **realm_context(config, secrets))


def keycloak_files(config: StackConfig, secrets: SecretValues) -> list[RenderedFile]:
    return [
        RenderedFile("keycloak/keycloak.conf", KEYCLOAK_CONF_FILE, render_keycloak_conf(config, secrets), secret=True),
        # holds the client secret and the bootstrap password
        RenderedFile("keycloak/realm.json", REALM_IMPORT_FILE, render_realm(config, secrets), secret=True),
    ]


def postgres_files(config: StackConfig, secrets: SecretValues) -> list[RenderedFile]:
    return [RenderedFile("postgres/password", POSTGRES_PASSWORD_FILE, secrets.postgres_password, secret=True)]


def identity_files(config: StackConfig, secrets: SecretValues) -> list[RenderedFile]:
    return keycloak_files(config, secrets) + postgres_files(config, secrets)


# who each image runs as, so secret files are uploaded 0600 to that user (CapDrop ALL takes root's
# CAP_DAC_OVERRIDE: nothing reads past the permission bits). quay.io/keycloak/keycloak: USER 1000, group 0.
KEYCLOAK_USER = FileOwner(1000, 0)
# docker-library/postgres creates postgres as 70 in the Alpine images and 999 in the Debian ones;
# its entrypoint reads POSTGRES_PASSWORD_FILE again after dropping to that user
POSTGRES_ALPINE_USER = FileOwner(70, 70)
POSTGRES_DEBIAN_USER = FileOwner(999, 999)
# the entrypoint creates and chowns the data directory as root, then drops to postgres (gosu/su-exec)
POSTGRES_CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID")


def postgres_user(image: str) -> FileOwner:
    """The postgres user of a docker-library PostgreSQL image (or one built on it), by its variant."""
    return POSTGRES_ALPINE_USER if "alpine" in image.rsplit(":", 1)[-1] else POSTGRES_DEBIAN_USER


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
                uploads=self.secret_uploads(postgres_files, postgres_user(settings.postgres_image)),
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
                capabilities=POSTGRES_CAPABILITIES,
                stop_grace_seconds=60,
            )
        )
        self.keycloak = self.container(
            ContainerSpec(
                service="keycloak",
                name="keycloak",
                image=self.image("keycloak-image", settings.keycloak_image),
                command=keycloak_command(self.config),
                uploads=self.secret_uploads(keycloak_files, KEYCLOAK_USER),
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
