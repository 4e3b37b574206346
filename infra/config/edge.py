"""The edge proxy's settings: the only ports the stack publishes on the host."""

from __future__ import annotations

from pydantic import Field, model_validator

from infra.config.base import Port, Settings


class EdgeSettings(Settings):
    public_host: str = Field("localhost", description="host name (or address) clients use to reach the stack")
    s3_port: Port = Field(9000, description="S3 API, plain HTTP")
    s3_tls_port: Port = Field(9443, description="S3 API, HTTPS")
    http_port: Port = Field(80, description="console, Grafana and Keycloak, plain HTTP")
    https_port: Port = Field(443, description="console, Grafana and Keycloak, HTTPS")

    def published_ports(self) -> dict[str, int]:
        return {
            "s3Port": self.s3_port,
            "s3TlsPort": self.s3_tls_port,
            "httpPort": self.http_port,
            "httpsPort": self.https_port,
        }

    @model_validator(mode="after")
    def _ports_are_distinct(self) -> EdgeSettings:
        by_port: dict[int, list[str]] = {}
        for key, port in self.published_ports().items():
            by_port.setdefault(port, []).append(key)
        clashes = [f"{' and '.join(keys)} are both {port}" for port, keys in by_port.items() if len(keys) > 1]
        if clashes:
            raise ValueError("; ".join(clashes) + ": every published port must be different")
        return self
