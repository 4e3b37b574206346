# Shared by scripts/deploy, scripts/test and scripts/smoke: the project's virtual environment,
# installed from a hash-locked requirements file and reinstalled only when that file changes,
# with the project itself on top in editable mode (no dependencies: they come from the lock).
# usage: ensure_venv <lock file>

# sha256 of a file; stock macOS has shasum but no sha256sum
file_sha256() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  else
    shasum -a 256 "$1" | cut -d' ' -f1
  fi
}

ensure_venv() {
  local lock="$1" venv="${VENV:-.venv}"
  local stamp="$venv/.installed-$(basename "$lock")"
  local want
  want=$(file_sha256 "$lock")
  if [ ! -x "$venv/bin/python" ]; then
    echo "==> creating virtual environment $venv"
    if ! python3 -m venv "$venv" 2>/dev/null; then
      # Debian and Ubuntu ship the venv module separately
      rm -rf "$venv"
      if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv "$venv"
      else
        echo "error: python3 cannot create a virtual environment; install python3-venv (Debian, Ubuntu) and run again." >&2
        return 1
      fi
    fi
  fi
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "==> installing locked dependencies from $lock"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes -r "$lock"
    rm -f "$venv"/.installed-*
    echo "$want" > "$stamp"
  fi
  ensure_project "$venv"
}

ensure_project() {
  local venv="$1" project
  project=$(file_sha256 pyproject.toml)
  if [ "$(cat "$venv/.installed-project" 2>/dev/null)" != "$project" ]; then
    echo "==> installing the project into $venv (editable)"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e .
    echo "$project" > "$venv/.installed-project"
  fi
}

# What the runtime commands (deploy, ops, smoke, preflight) need: a venv installed from the test
# lock already holds every runtime dependency (a superset), so it is kept as it is.
ensure_runtime_venv() {
  local venv="${VENV:-.venv}"
  if [ "$(cat "$venv/.installed-requirements-test.lock" 2>/dev/null)" = "$(file_sha256 requirements-test.lock)" ]; then
    ensure_project "$venv"
  else
    ensure_venv requirements.lock
  fi
}
