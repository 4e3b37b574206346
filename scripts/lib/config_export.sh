# Sourced by scripts/deploy: the configuration export that runs before `pulumi up` updates a stack
# that is already deployed, so the IAM and bucket settings an update could lose (a replaced node
# set, a wrong layout) can be put back with `scripts/ops import-config`.
# usage: export_configuration_before_update <stack>
# A new stack (no outputs yet) has nothing to export. SKIP_CONFIG_EXPORT=1 lets the update go on when
# the cluster cannot answer (rebuilding after a lost host, say).

export_configuration_before_update() {
  local stack="$1" out
  if ! pulumi stack output endpoints --stack "$stack" >/dev/null 2>&1; then
    return 0
  fi
  out="build/config-exports/$stack-$(date -u +%Y%m%dT%H%M%SZ).json"
  mkdir -p build/config-exports
  echo "==> exporting the configuration of stack $stack before the update: $out and the backup bucket"
  if scripts/ops export-config --stack "$stack" --out "$out"; then
    return 0
  fi
  if [ -n "${SKIP_CONFIG_EXPORT:-}" ]; then
    echo "warning: the configuration export failed (above); SKIP_CONFIG_EXPORT is set, so the update goes on without one." >&2
    return 0
  fi
  echo "error: the configuration export failed (above), so stack $stack was not updated; fix what it names, or run SKIP_CONFIG_EXPORT=1 scripts/deploy $stack to update without an export." >&2
  return 1
}
