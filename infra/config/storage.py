"""The MinIO storage tier's settings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from infra.config.base import ImageRef, MemoryMb, Settings
from infra.config.images import MINIO
from infra.quorum import ErasureLayout, LayoutError, choose_set_size

# the Silo fork: a maintained server whose embedded console keeps "Login with SSO" (see README, "The MinIO image")
DEFAULT_MINIO_IMAGE = MINIO.reference


class StorageSettings(Settings):
    nodes: int = Field(
        4, ge=2, le=32, description="MinIO node containers (distributed mode needs 2 or more; 32 fixed addresses)"
    )
    drives_per_node: int = Field(2, ge=1, description="volumes (drives) per node")
    parity: int | None = Field(None, description="storage-class parity EC:N; MinIO's default for the set size when unset")
    image: ImageRef = DEFAULT_MINIO_IMAGE
    memory_mb: MemoryMb = 2048
    prometheus_auth_type: Literal["jwt", "public"] = "jwt"
    keep_data_on_destroy: bool | None = Field(
        None, description="protect and retain data volumes; default: true on prod, false elsewhere"
    )

    # field validators (not a model validator) so that a bad layout is reported beside every other error
    @field_validator("drives_per_node")
    @classmethod
    def _drives_form_erasure_sets(cls, drives: int, info: ValidationInfo) -> int:
        nodes = info.data.get("nodes")
        if nodes is not None:
            try:
                choose_set_size(nodes, drives)
            except LayoutError as error:
                raise ValueError(str(error)) from None
        return drives

    @field_validator("parity")
    @classmethod
    def _parity_fits_the_set(cls, parity: int | None, info: ValidationInfo) -> int | None:
        nodes, drives = info.data.get("nodes"), info.data.get("drives_per_node")
        if parity is not None and nodes is not None and drives is not None:
            try:
                ErasureLayout.plan(nodes, drives, parity)
            except LayoutError as error:
                raise ValueError(str(error)) from None
        return parity

    def layout(self) -> ErasureLayout:
        return ErasureLayout.plan(self.nodes, self.drives_per_node, self.parity)
