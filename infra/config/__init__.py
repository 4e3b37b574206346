"""Typed stack configuration: one model per stack, validated before any resource is created."""

from infra.config.stack import (
    ENVIRONMENTS,
    PROJECT,
    ConfigError,
    StackConfig,
    StackFileError,
    known_stacks,
    namespace_problem,
    parse_stack_config,
    read_stack_file,
    split_config,
    stack_file,
)

__all__ = [
    "ENVIRONMENTS",
    "PROJECT",
    "ConfigError",
    "StackConfig",
    "StackFileError",
    "known_stacks",
    "namespace_problem",
    "parse_stack_config",
    "read_stack_file",
    "split_config",
    "stack_file",
]
