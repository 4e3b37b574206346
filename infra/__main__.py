"""Command line of the bundle that needs neither Pulumi CLI nor Docker.

    python -m infra render --stack dev --out build/dev    # every file the stack's containers receive
    python -m infra validate --stack prod                 # check a stack's configuration only
    python -m infra preflight --stack dev                 # check the Docker host a deploy would target
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from infra.config import ConfigError, StackConfig, read_stack_file, split_config
from infra.secrets import SECRET_CONFIG_KEYS, SecretValues
from infra.stack_files import render_stack_files

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def load_stack(stack: str, config_file: Path | None) -> StackConfig:
    path = config_file or PROJECT_ROOT / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        raise SystemExit(f"error: no configuration for stack {stack!r}: {path} does not exist")
    values, encrypted = read_stack_file(path)
    config, _ = split_config(stack, values, SECRET_CONFIG_KEYS, encrypted)
    for warning in config.warnings():
        print(f"warning: {warning}", file=sys.stderr)
    return config


def render(stack: str, out: Path, config_file: Path | None) -> int:
    config = load_stack(stack, config_file)
    # secrets exist only at deploy time; offline they are marked throwaway values
    files = render_stack_files(config, SecretValues.throwaway())
    for item in files:
        target = out / item.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(item.content)
        if item.secret:
            target.chmod(0o600)
    print(f"rendered {len(files)} file(s) of stack {stack!r} into {out}")
    return 0


def preflight(stack: str, config_file: Path | None, timeout: float) -> int:
    from infra.inventory import inventory, stack_config
    from infra.preflight import check_host

    try:
        config, values, _ = stack_config(stack, config_file)
    except FileNotFoundError as error:
        raise SystemExit(f"error: {error}") from None
    port_keys = {port: f"edge.{key}" for key, port in config.edge.published_ports().items()}
    report = check_host(inventory(stack, config_file), port_keys, values, timeout)
    print(f"preflight of stack {stack!r} on {report.target.endpoint} ({report.target.source}):")
    for finding in report.findings:
        print(f"  {finding}")
    sys.stdout.flush()
    if report.problems:
        print(
            f"error: the preflight found {len(report.problems)} problem(s) on {report.target.endpoint}; "
            f"fix them and run scripts/preflight {stack} again (nothing was changed)",
            file=sys.stderr,
        )
        return 1
    print(f"preflight of stack {stack!r}: no problems, {len(report.warnings)} warning(s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("render", "write every file the stack's containers receive"),
        ("validate", "check a stack's configuration"),
        ("preflight", "check the Docker host a deploy would target (engine, subnets, ports, memory, disk)"),
    ):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("--stack", required=True, help="stack name: dev, staging, prod or your own")
        command.add_argument("--config-file", type=Path, help="stack file to read (default: Pulumi.<stack>.yaml)")
        if name == "render":
            command.add_argument("--out", type=Path, required=True, help="output folder")
        if name == "preflight":
            command.add_argument("--timeout", type=float, default=20.0, help="seconds each docker call may take (default: 20)")
    args = parser.parse_args(argv)
    try:
        if args.command == "render":
            return render(args.stack, args.out, args.config_file)
        if args.command == "preflight":
            return preflight(args.stack, args.config_file, args.timeout)
        load_stack(args.stack, args.config_file)
        print(f"stack {args.stack!r}: configuration is valid")
        return 0
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
