# Shared by scripts/smoke (and its test): starting what the smoke suite left stopped.
# The ledger (tests/smoke/stack.py NodeOutage) lists one container per line: its name, then a tab
# and the Docker endpoint of a node on its own host (storage.hosts), if it is on one.
# usage: restart_leftovers <ledger file>   (needs `bounded` from docker_host.sh)

restart_leftovers() {
  local ledger="$1" name endpoint
  if [ -s "$ledger" ]; then
    echo "==> starting containers the smoke tests left stopped: $(cut -f1 "$ledger" | tr '\n' ' ')" >&2
    while IFS=$'\t' read -r name endpoint; do
      if [ -n "$endpoint" ]; then
        DOCKER_HOST="$endpoint" bounded 120 env -u DOCKER_CONTEXT docker start "$name" >/dev/null \
          || echo "error: start it by hand: DOCKER_HOST=$endpoint docker start $name" >&2
      else
        bounded 120 docker start "$name" >/dev/null || echo "error: start it by hand: docker start $name" >&2
      fi
    done < "$ledger"
  fi
  rm -f "$ledger"
}
