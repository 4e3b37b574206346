# Shared by scripts/deploy, scripts/preflight and scripts/smoke: which Docker daemon they talk to.
# usage: export_docker_context_host
# pulumi-docker's provider reads docker:host or DOCKER_HOST and ignores the CLI's contexts
# (provider/provider.go `Configure`): with neither it tries the default sockets only, which misses
# Colima and remote contexts. So the active context's endpoint (DOCKER_CONTEXT's, if set) is exported.
export_docker_context_host() {
  local host
  if [ -z "${DOCKER_HOST:-}" ] && command -v docker >/dev/null 2>&1; then
    host=$(bounded 20 docker context inspect --format '{{.Endpoints.docker.Host}}' 2>/dev/null) || host=""
    if [ -n "$host" ] && [ "$host" != "<no value>" ]; then
      export DOCKER_HOST="$host"
    fi
  fi
}

# usage: bounded SECONDS command...: the command, ended after SECONDS where `timeout` exists (not on stock macOS)
bounded() {
  local seconds="$1"
  shift
  if command -v timeout >/dev/null 2>&1; then
    timeout "$seconds" "$@"
  else
    "$@"
  fi
}
