"""The bundle's command line before and after a deploy; none of it needs the Pulumi CLI or Docker
but `preflight`, which reads the Docker host.

    scripts/infra validate --stack prod                 # everything the deploy checks before it changes anything
    scripts/infra plan --stack dev [--json] [--deployed F] # what a deploy would create: containers, ports, volumes, memory, quorum
    scripts/infra render --stack dev --out build/dev    # every file the stack's containers receive, into a new or empty folder
    scripts/infra sizing                                # host memory and disk for every stack (the README's table)
    scripts/infra preflight --stack dev                 # check the Docker host a deploy would target
    scripts/infra summary --stack dev --outputs-file F  # where to go after a deploy (scripts/deploy prints it)

`python -m infra ...` is the same command line. Exit codes: 0 done; 1 the preflight found a
problem on the host, or the program failed when run offline; 2 a bad input (unknown stack,
unreadable stack file, invalid configuration, output folder), said in one line per problem;
3 (validate) valid but for the inputs only the operator can give (prod's public host, certificate
and key; the mirror target's keys with `replication`), which scripts/deploy then asks for once the
stack exists.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from infra.config import ConfigError, StackConfig, StackFileError, known_stacks, read_stack_file, split_config, stack_file
from infra.secrets import SECRET_CONFIG_KEYS, SecretValues
from infra.stack_files import render_stack_files

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# validate: everything else is valid, but what only the operator can give is missing
EXIT_OPERATOR_INPUTS_MISSING = 3


class InputError(SystemExit):
    """A stack or a path the command cannot use: said in one line, exit code 2.

    A SystemExit, so that code calling `main` stops as the command line does.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.code = 2


def _config(stack: str, config_file: Path | None, warn: bool = True) -> tuple[StackConfig, set[str]]:
    values, encrypted = read_stack_file(stack_file(stack, PROJECT_ROOT, config_file))
    config, supplied = split_config(stack, values, SECRET_CONFIG_KEYS, encrypted)
    for warning in config.warnings() if warn else []:
        print(f"warning: {warning}", file=sys.stderr)
    return config, set(supplied)


def load_stack(stack: str, config_file: Path | None) -> StackConfig:
    """The validated configuration of a stack; raises ConfigError, or InputError for an unknown stack."""
    try:
        return _config(stack, config_file)[0]
    except StackFileError as error:
        raise InputError(str(error)) from None


def validate(args: argparse.Namespace) -> int:
    config, supplied = _config(args.stack, args.config_file)
    from infra.inventory import offline_run

    try:
        # with throwaway stand-ins for missing operator inputs, so the rest is checked all the same
        offline_run(args.stack, args.config_file)
    except ConfigError:
        raise
    except Exception as error:  # noqa: BLE001 - whatever the program raises, said in one line
        print(f"error: stack {args.stack!r}: the program fails when run offline: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    # what infra/program.py load_config refuses before any resource: only the operator can give these
    missing = config.missing_operator_inputs(supplied)
    if missing:
        print(f"error: {ConfigError(args.stack, missing)}", file=sys.stderr)
        return EXIT_OPERATOR_INPUTS_MISSING
    print(f"stack {args.stack!r}: configuration is valid, and the program runs with it")
    return 0


def _writable_empty_folder(out: Path) -> None:
    """Render writes only into a new or empty folder, so no file of another render can pass for one of this one."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder that is new or empty")
    if out.is_dir():
        held = sorted(str(path.relative_to(out)) for path in out.rglob("*") if not path.is_dir())
        if held or any(out.iterdir()):
            example = f", such as {held[0]}" if held else ""
            raise InputError(
                f"--out {out} is not empty ({len(held)} file(s){example}); render writes only into a new or empty folder, "
                "so that no file of another render is mixed in: delete it, or choose another folder"
            )


def render(args: argparse.Namespace) -> int:
    config = load_stack(args.stack, args.config_file)
    out: Path = args.out
    _writable_empty_folder(out)
    # secrets exist only at deploy time; offline they are marked throwaway values
    files = render_stack_files(config, SecretValues.throwaway(nodes_on_hosts=len(config.storage.hosts or [])))
    try:
        for item in files:
            target = out / item.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(item.content)
            if item.secret:
                target.chmod(0o600)
    except OSError as error:
        raise InputError(f"cannot write into {out}: {error.strerror} ({error.filename})") from None
    print(f"rendered {len(files)} file(s) of stack {args.stack!r} into {out}")
    return 0


def plan_command(args: argparse.Namespace) -> int:
    from infra.plan import plan

    _config(args.stack, args.config_file)  # its warnings, before the plan
    deployed = _read_json_object(args.deployed) if args.deployed else None
    result = plan(args.stack, args.config_file, deployed)
    print(json.dumps(result.as_dict(), indent=2) if args.json else "\n".join(result.lines()))
    return 0


def sizing(args: argparse.Namespace) -> int:
    from infra.plan import plan, sizing_table

    stacks = args.stacks or known_stacks(PROJECT_ROOT)
    print("\n".join(sizing_table([plan(stack) for stack in stacks])))
    return 0


def preflight(args: argparse.Namespace) -> int:
    from infra.inventory import inventory, stack_config
    from infra.preflight import check_host

    stack = args.stack
    config, values, _ = stack_config(stack, args.config_file)
    port_keys = {port: f"edge.{key}" for key, port in config.edge.published_ports().items()}
    report = check_host(inventory(stack, args.config_file), port_keys, values, args.timeout, hosts=config.storage.hosts or ())
    nodes = f" and the {len(report.node_hosts)} node hosts of storage.hosts" if report.node_hosts else ""
    where = report.target.endpoint + nodes
    print(f"preflight of stack {stack!r} on {report.target.endpoint} ({report.target.source}){nodes}:")
    for finding in report.findings:
        print(f"  {finding}")
    sys.stdout.flush()
    if report.problems:
        print(
            f"error: the preflight found {len(report.problems)} problem(s) on {where}; "
            f"fix them and run scripts/preflight {stack} again (nothing was changed)",
            file=sys.stderr,
        )
        return 1
    print(f"preflight of stack {stack!r}: no problems, {len(report.warnings)} warning(s)")
    return 0


def _read_json_object(source: str) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except OSError as error:
        raise InputError(f"cannot read the outputs file {source}: {error.strerror}") from None
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(f"the outputs in {source} are not JSON: {error.msg} (line {error.lineno}, column {error.colno})") from None
    if not isinstance(loaded, dict):
        raise InputError(f"the outputs in {source} are not a JSON object of `pulumi stack output --json`")
    return loaded


def summary(args: argparse.Namespace) -> int:
    from infra.summary import PulumiEnvironment, SmokeResult, summary_lines

    config, _ = _config(args.stack, args.config_file, warn=False)  # the deploy showed them at its start
    outputs = _read_json_object(args.outputs_file)
    if args.smoke_exit is None:
        smoke = SmokeResult(None, skipped_because=args.smoke_skipped or "not asked for")
    else:
        log = ""
        if args.smoke_log is not None:
            try:
                log = args.smoke_log.read_text(errors="replace")
            except OSError as error:
                raise InputError(f"cannot read the smoke log {args.smoke_log}: {error.strerror}") from None
        smoke = SmokeResult.from_log(args.smoke_exit, log)
    environment = PulumiEnvironment.from_environ(PROJECT_ROOT, os.environ)
    print("\n".join(summary_lines(args.stack, outputs, config.keep_data_on_destroy, environment, smoke)))
    return 0


COMMANDS: dict[str, tuple[str, Callable[[argparse.Namespace], int]]] = {
    "validate": ("check a stack as the deploy does: its configuration, prod's operator inputs, and the program run with it", validate),
    "plan": ("list what a deploy would create: containers, images, networks, ports, volumes, memory, quorum, endpoints", plan_command),
    "render": ("write every file the stack's containers receive, into a new or empty folder", render),
    "sizing": ("the host memory and disk each stack needs, as a Markdown table", sizing),
    "preflight": ("check the Docker host a deploy would target (engine, subnets, ports, memory, disk)", preflight),
    "summary": ("after a deploy: URLs, how to read each credential, the smoke tests' result, how to tear down", summary),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scripts/infra", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, _) in COMMANDS.items():
        command = commands.add_parser(name, help=help_text, description=help_text)
        if name == "sizing":
            command.add_argument("stacks", nargs="*", help="stacks to size (default: every Pulumi.<stack>.yaml here)")
            continue
        command.add_argument("--stack", required=True, help="stack name: dev, staging, prod or your own")
        command.add_argument("--config-file", type=Path, help="stack file to read (default: Pulumi.<stack>.yaml)")
        if name == "render":
            command.add_argument("--out", type=Path, required=True, help="output folder: new or empty")
        if name == "plan":
            command.add_argument("--json", action="store_true", help="machine-readable output")
            command.add_argument(
                "--deployed", help="JSON of `pulumi stack output --json --stack S` ('-': stdin): compare with what is deployed"
            )
        if name == "preflight":
            command.add_argument("--timeout", type=float, default=20.0, help="seconds each docker call may take (default: 20)")
        if name == "summary":
            command.add_argument("--outputs-file", required=True, help="JSON of `pulumi stack output --json --stack S` ('-': stdin)")
            command.add_argument("--smoke-exit", type=int, help="exit code of scripts/smoke")
            command.add_argument("--smoke-log", type=Path, help="what scripts/smoke printed (for its tally)")
            command.add_argument("--smoke-skipped", help="why the smoke tests did not run")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        try:
            return COMMANDS[args.command][1](args)
        except StackFileError as error:
            raise InputError(str(error)) from None
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        raise
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
