"""How every container of the stack runs: restart policy and log rotation."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from infra.config.base import Settings


class ContainerSettings(Settings):
    restart: Literal["unless-stopped", "always", "on-failure"] = "unless-stopped"
    log_max_size: str = Field("20m", pattern=r"^[1-9][0-9]*[kmg]$", description="json-file log rotation size, e.g. 20m")
    log_max_files: int = Field(5, ge=1, le=100)
