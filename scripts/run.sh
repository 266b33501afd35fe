#!/usr/bin/env bash
# `make run`: the whole service on this machine: Redis (reused or started), workers, API, Flower.
# Ctrl-C stops everything this script started.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
export API_PORT="${API_PORT:-8000}"
export FLOWER_PORT="${FLOWER_PORT:-5555}"
export FLOWER_USER="${FLOWER_USER:-admin}"
if [ -z "${FLOWER_PASSWORD:-}" ]; then
  FLOWER_PASSWORD="$($BIN/python -c 'import secrets; print(secrets.token_urlsafe(12))')"
  export FLOWER_PASSWORD
fi
export PROMETHEUS_MULTIPROC_DIR="${PROMETHEUS_MULTIPROC_DIR:-$PWD/var/prometheus}"
rm -rf "$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$PROMETHEUS_MULTIPROC_DIR" var/log

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo "stopping..."
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  exit 0
}
trap cleanup INT TERM EXIT

redis_up() { $BIN/python -c "import redis,sys; redis.Redis.from_url('$REDIS_URL', socket_connect_timeout=1).ping()" 2>/dev/null; }
if redis_up; then
  echo "using Redis at $REDIS_URL"
else
  command -v redis-server >/dev/null || scripts/ensure-tools.sh redis-server
  port=$($BIN/python -c "from urllib.parse import urlparse; print(urlparse('$REDIS_URL').port or 6379)")
  echo "no Redis at $REDIS_URL: starting redis-server on port $port (data in var/redis)"
  mkdir -p var/redis
  # A memory cap, as in compose: at the cap new work is refused (503 store_full), queued
  # and running jobs still finish, nothing is evicted (docs/DESIGN.md, "Redis memory").
  redis-server --port "$port" --bind 127.0.0.1 --dir "$PWD/var/redis" --appendonly yes \
    --appendfsync everysec --save "" --maxmemory "${REDIS_MAXMEMORY:-1gb}" \
    --maxmemory-policy noeviction >var/log/redis.log 2>&1 &
  pids+=($!)
  for _ in $(seq 50); do redis_up && break; sleep 0.1; done
  redis_up || { echo "redis-server did not start; see var/log/redis.log"; exit 1; }
fi

$BIN/python -m workers >var/log/worker.log 2>&1 &
pids+=($!)
$BIN/python -m api >var/log/api.log 2>&1 &
pids+=($!)
$BIN/celery -A workers.app:celery_app flower --port="$FLOWER_PORT" --address=127.0.0.1 \
  --basic-auth="$FLOWER_USER:$FLOWER_PASSWORD" >var/log/flower.log 2>&1 &
pids+=($!)

for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$API_PORT/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
cat <<INFO

  API        http://127.0.0.1:$API_PORT        (docs: /docs, ready: /readyz, metrics: /metrics)
  Dashboard  http://127.0.0.1:$API_PORT/dashboard
  Flower     http://127.0.0.1:$FLOWER_PORT     (user $FLOWER_USER, password $FLOWER_PASSWORD)
  Logs       var/log/{api,worker,flower}.log

  Try: curl -F file=@tests/data/digit7.png http://127.0.0.1:$API_PORT/v1/predict
  Ctrl-C stops everything.
INFO
curl -fsS "http://127.0.0.1:$API_PORT/readyz" >/dev/null 2>&1 || echo "  (not ready yet: see var/log/worker.log)"
status=0
wait -n "${pids[@]}" || status=$?
echo "a service exited (status $status); stopping the others. See var/log/."
