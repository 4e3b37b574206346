"""A stand-in for the docker command line, answering from a JSON fixture instead of a daemon.

It answers what the preflight and scripts/deploy ask: `version`, `info`, `network ls|inspect`,
`ps`, `inspect`, `run ... --mount type=bind,source=P,... IMAGE stat -c '%d %n' TARGET...` (the
fixture's `host_paths` map each existing directory to its device number; a missing one is refused as
the daemon refuses it) and `stat -c '%g %n'` (its `socket_groups` map each existing socket to its
group), `context inspect [NAME]` (the active `context`, or one of `contexts`), with `--format` templates of the forms `{{json .}}`,
`{{json .A.B}}` and `{{.A.B}}`. The fixture may say the daemon is `down` (the CLI's error on
stderr, exit 1) or that it `hang`s; every call is appended to the fixture's `log` file with the
DOCKER_HOST it saw and the endpoint it asked. `install` puts it first on a PATH as `docker`.

Several daemons: `daemons` maps an endpoint (`-H`/`--host`, else DOCKER_HOST) to a fixture of its
own, answered as above; with `daemons` set, an endpoint that is neither one of them nor the
top-level fixture's `endpoint` fails as the CLI fails to connect. Without `daemons` the top-level
fixture answers whatever endpoint is asked.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


def install(bin_dir: Path, fixture: dict[str, Any]) -> Path:
    """Write `fixture` and a `docker` executable in `bin_dir` that answers from it; returns the fixture path."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    fixture_path = bin_dir / "fake-docker.json"
    fixture_path.write_text(json.dumps(fixture))
    wrapper = bin_dir / "docker"
    wrapper.write_text(
        f"#!/bin/sh\nFAKE_DOCKER_FIXTURE='{fixture_path}' exec '{sys.executable}' '{Path(__file__).resolve()}' \"$@\"\n"
    )
    wrapper.chmod(0o755)
    return fixture_path


def _format(template: str, document: Any) -> str:
    match = re.fullmatch(r"\{\{\s*(json\s+)?\.([\w.]*)\s*\}\}", template)
    if match is None:
        raise SystemExit(f"fake docker: unsupported --format {template!r}")
    value = document
    for part in filter(None, match.group(2).split(".")):
        value = value.get(part) if isinstance(value, dict) else None
    if match.group(1):
        return json.dumps(value)
    return "<no value>" if value is None else str(value)


def _option(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def _positional(args: list[str]) -> list[str]:
    words, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in ("--format", "-f", "--type", "-H", "--host"):
            skip = True
        elif not arg.startswith("-"):
            words.append(arg)
    return words


def answer(fixture: dict[str, Any], args: list[str]) -> tuple[int, str, str]:
    words = _positional(args)
    command = words[0] if words else ""
    template = _option(args, "--format") or _option(args, "-f")
    if command == "context":
        active = fixture.get("context", {"Name": "default", "Endpoints": {"docker": {"Host": "unix:///var/run/docker.sock"}}})
        named = {context["Name"]: context for context in [active, *fixture.get("contexts", [])]}
        name = words[2] if len(words) > 2 else active["Name"]
        if name not in named:
            return 1, "", f'context "{name}" does not exist\n'
        return 0, (_format(template, named[name]) if template else json.dumps([named[name]])) + "\n", ""
    if fixture.get("hang"):
        time.sleep(3600)
    if fixture.get("down"):
        return 1, "", f"{fixture['down']}\n"
    if command == "version":
        document = {"Client": {"Version": "28.2.2"}, "Server": fixture.get("server", {"Version": "28.2.2"})}
        return 0, (_format(template, document) if template else json.dumps(document)) + "\n", ""
    if command == "info":
        info = fixture.get("info", {})
        return 0, (_format(template, info) if template else json.dumps(info)) + "\n", ""
    if words[:2] == ["network", "ls"]:
        return 0, "".join(f"{network['Id']}\n" for network in fixture.get("networks", [])), ""
    if words[:2] == ["network", "inspect"]:
        by_id = {network["Id"]: network for network in fixture.get("networks", [])}
        return 0, json.dumps([by_id[i] for i in words[2:]]) + "\n", ""
    if command == "ps":
        listed = [c for c in fixture.get("containers", []) if "--all" in args or c.get("State", {}).get("Running")]
        return 0, "".join(f"{container['Id']}\n" for container in listed), ""
    if command == "run":
        return _run_stat(fixture, args)
    if command == "inspect":
        by_id = {container["Id"]: container for container in fixture.get("containers", [])}
        return 0, json.dumps([by_id[i] for i in words[1:]]) + "\n", ""
    return 1, "", f"fake docker: no answer for {args}\n"


def _run_stat(fixture: dict[str, Any], args: list[str]) -> tuple[int, str, str]:
    """`stat -c '%d %n'` (device) or `stat -c '%g %n'` (group) over bind mounts, as the daemon and busybox answer it."""
    asked = "%d %n" if "%d %n" in args else "%g %n"
    known: dict[str, int] = fixture.get("host_paths" if asked == "%d %n" else "socket_groups", {})
    mounts = {}
    for index, arg in enumerate(args):
        if arg == "--mount":
            fields = dict(part.partition("=")[::2] for part in args[index + 1].split(","))
            if fields["source"] not in known:
                # moby: errMountConfig wrapping errBindSourceDoesNotExist; the CLI prefixes "docker: "
                message = f'invalid mount config for type "bind": bind source path does not exist: {fields["source"]}'
                return 125, "", f"docker: Error response from daemon: {message}\n"
            mounts[fields["target"]] = known[fields["source"]]
    targets = args[args.index(asked) + 1 :]
    return 0, "".join(f"{mounts[target]} {target}\n" for target in targets), ""


def endpoint_of(args: list[str], environ: dict[str, str]) -> str | None:
    """The daemon the CLI is pointed at: a global -H/--host before the command, else DOCKER_HOST."""
    for index, arg in enumerate(args):
        if arg in ("-H", "--host") and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith("--host="):
            return arg.partition("=")[2]
        if not arg.startswith("-"):
            break
    return environ.get("DOCKER_HOST") or None


def cannot_connect(endpoint: str) -> str:
    """What the docker CLI prints when nothing answers at `endpoint`."""
    if endpoint.startswith("ssh://"):
        parts = urlsplit(endpoint)
        user = f"-l {parts.username} " if parts.username else ""
        return (
            f'error during connect: Get "http://docker.example.com/v1.47/version": command [ssh -o ConnectTimeout=30 -T {user}'
            f"-- {parts.hostname} docker system dial-stdio] has exited with exit status 255, make sure the URL is valid, "
            f"and Docker 18.09 or later is installed on the remote host: stderr=ssh: connect to host {parts.hostname} port 22: "
            "Connection refused"
        )
    return f"Cannot connect to the Docker daemon at {endpoint}. Is the docker daemon running?"


def daemon(fixture: dict[str, Any], endpoint: str | None) -> dict[str, Any]:
    """The fixture of the daemon at `endpoint`: one of `daemons`, or the top-level one, or one that cannot be reached."""
    daemons = fixture.get("daemons")
    if daemons is None or endpoint is None or endpoint == fixture.get("endpoint"):
        return fixture
    if endpoint in daemons:
        return dict(daemons[endpoint])
    return {"down": cannot_connect(endpoint)}


def main(args: list[str]) -> int:
    fixture = json.loads(Path(os.environ["FAKE_DOCKER_FIXTURE"]).read_text())
    endpoint = endpoint_of(args, dict(os.environ))
    if fixture.get("log"):
        with open(fixture["log"], "a") as log:
            log.write(json.dumps({"args": args, "DOCKER_HOST": os.environ.get("DOCKER_HOST"), "endpoint": endpoint}) + "\n")
    # a context lives in the CLI's own configuration, whichever daemon it names
    code, out, err = answer(fixture if _positional(args)[:1] == ["context"] else daemon(fixture, endpoint), args)
    sys.stdout.write(out)
    sys.stderr.write(err)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
