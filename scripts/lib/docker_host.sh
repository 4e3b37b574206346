# Shared by scripts/deploy and scripts/preflight: which Docker daemon they talk to.
# usage: export_docker_context_host
# The docker provider reads DOCKER_HOST, not the CLI's active context (Docker Desktop, Colima), so export the context's endpoint.
export_docker_context_host() {
  local host
  if [ -z "${DOCKER_HOST:-}" ] && command -v docker >/dev/null 2>&1; then
    host=$(docker context inspect --format '{{.Endpoints.docker.Host}}' 2>/dev/null) || host=""
    if [ -n "$host" ] && [ "$host" != "<no value>" ]; then
      export DOCKER_HOST="$host"
    fi
  fi
}
