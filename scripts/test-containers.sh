#!/usr/bin/env bash
# `make test-containers`: the compose stack on a real Docker engine (tests/containers/).
#
# Engine, in this order:
#   1. the one `docker` already talks to (DOCKER_HOST or the default socket);
#   2. else the private engine of CONTAINER_ENGINE_UP (default: ../shared/tools/container-engine/up.sh
#      next to this checkout), started here; it must then come up, or this fails;
#   3. else there is no engine to be had at all: SKIP with the reason, exit 0.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
up="${CONTAINER_ENGINE_UP:-../shared/tools/container-engine/up.sh}"

engine_ok() { command -v docker >/dev/null 2>&1 && timeout 20 docker info >/dev/null 2>&1; }

if engine_ok; then
  echo "test-containers: using the running engine (${DOCKER_HOST:-default socket})"
elif [ -f "$up" ]; then
  echo "test-containers: starting the private engine with $up"
  env_line="$(bash "$up" . | tail -1)"
  case "$env_line" in
    "export DOCKER_HOST="*) eval "$env_line" ;;
    *) echo "test-containers: FAILED: $up did not print the engine's DOCKER_HOST (logs: /var/lib/container-engine/logs/)" >&2; exit 1 ;;
  esac
  engine_ok || { echo "test-containers: FAILED: the engine at $DOCKER_HOST does not answer" >&2; exit 1; }
else
  echo "test-containers: SKIPPED: no Docker engine answers (docker info) and no engine script at $up" \
       "(set CONTAINER_ENGINE_UP or DOCKER_HOST to run the container suite)"
  exit 0
fi
docker compose version >/dev/null 2>&1 || { echo "test-containers: FAILED: the engine has no 'docker compose' (Compose v2)" >&2; exit 1; }

export DIGITS_CONTAINER_TESTS=1
exec "$BIN/pytest" tests/containers -p no:cacheprovider -o addopts="" -rA --timeout=900 "$@"
