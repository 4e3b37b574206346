"""Every file every container of a stack receives, in one list: what `render` writes."""

from __future__ import annotations

from collections.abc import Callable

from infra.backups import backup_files, mirror_files
from infra.config import StackConfig
from infra.edge import edge_files
from infra.identity import identity_files
from infra.monitoring import monitoring_files
from infra.rendering import RenderedFile
from infra.secrets import SecretValues
from infra.storage import minio_files

# one renderer per tier; each is the same function its component delivers the files with
RENDERERS: tuple[Callable[[StackConfig, SecretValues], list[RenderedFile]], ...] = (
    minio_files,
    identity_files,
    edge_files,
    monitoring_files,
    backup_files,
    mirror_files,
)


def render_stack_files(config: StackConfig, secrets: SecretValues) -> list[RenderedFile]:
    files = [item for renderer in RENDERERS for item in renderer(config, secrets)]
    paths = [item.path for item in files]
    duplicates = sorted({path for path in paths if paths.count(path) > 1})
    if duplicates:
        raise RuntimeError(f"two renderers write the same file(s): {', '.join(duplicates)}")
    return files
