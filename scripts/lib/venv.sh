# Shared by scripts/deploy, scripts/test and scripts/smoke: the project's virtual environment,
# installed from a hash-locked requirements file and reinstalled only when that file changes.
# usage: ensure_venv <lock file>
ensure_venv() {
  local lock="$1" venv="${VENV:-.venv}"
  local stamp="$venv/.installed-$(basename "$lock")"
  local want
  want=$(sha256sum "$lock" | cut -d' ' -f1)
  if [ ! -x "$venv/bin/python" ]; then
    echo "==> creating virtual environment $venv"
    python3 -m venv "$venv"
  fi
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "==> installing locked dependencies from $lock"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes -r "$lock"
    rm -f "$venv"/.installed-*
    echo "$want" > "$stamp"
  fi
}
