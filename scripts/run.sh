#!/usr/bin/env bash
# `make run`: the whole service on this machine: Redis (reused or started), workers, API,
# Prometheus, Flower.
# Every process it starts is supervised: one that exits (crash, OOM kill, kill -9) is restarted
# after a back-off (1 s, doubling to RESTART_MAX_DELAY_S, back to 1 s once it stayed up 60 s),
# and each restart is logged here and in the service's log. Ctrl-C or SIGTERM stops everything.
#
# Knobs (environment): DIGITS_REDIS_URL, DIGITS_NAMESPACE, REDIS_MAXMEMORY, DIGITS_API_PORT,
# DIGITS_WORKER_METRICS_PORT, FLOWER_PORT, FLOWER_USER, FLOWER_PASSWORD, PROMETHEUS_PORT, PROMETHEUS_INTERVAL (scrape and rule interval, 5s),
# RUN_DIR (logs, Redis data, metrics files, Prometheus data; default var/),
# RESTART_MAX_DELAY_S, and every service setting (README, Configuration).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
RUN_DIR="${RUN_DIR:-$PWD/var}"
LOG="$RUN_DIR/log"
RESTART_MAX_DELAY_S="${RESTART_MAX_DELAY_S:-30}"
# The names before the DIGITS_ prefix still work here (the services warn about the others).
for name in REDIS_URL API_PORT WORKER_METRICS_PORT PROMETHEUS_URL; do
  new="DIGITS_$name"
  if [ -n "${!name:-}" ] && [ -z "${!new:-}" ]; then
    echo "run.sh: $name is deprecated: set $new (read as $new this time)" >&2
    export "$new=${!name}"
  fi
done
export DIGITS_REDIS_URL="${DIGITS_REDIS_URL:-redis://127.0.0.1:6379/0}"
export DIGITS_API_PORT="${DIGITS_API_PORT:-8000}"
export FLOWER_PORT="${FLOWER_PORT:-5555}"
export FLOWER_USER="${FLOWER_USER:-admin}"
if [ -z "${FLOWER_PASSWORD:-}" ]; then
  FLOWER_PASSWORD="$($BIN/python -c 'import secrets; print(secrets.token_urlsafe(12))')"
  export FLOWER_PASSWORD
fi
export PROMETHEUS_MULTIPROC_DIR="${PROMETHEUS_MULTIPROC_DIR:-$RUN_DIR/prometheus}"
export PROMETHEUS_PORT="${PROMETHEUS_PORT:-9090}"
export DIGITS_PROMETHEUS_URL="${DIGITS_PROMETHEUS_URL:-http://127.0.0.1:$PROMETHEUS_PORT}"
rm -rf "$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$PROMETHEUS_MULTIPROC_DIR" "$LOG"
export DIGITS_WORKER_METRICS_PORT="${DIGITS_WORKER_METRICS_PORT:-9100}"

# Every port this script will listen on must be free *before* anything starts: on a shared
# host a taken DIGITS_API_PORT used to be answered by the other service, which passed the
# readiness probe, printed the success banner, and then this API exited (issue 17).
port_taken() { $BIN/python -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1', $1)) != 0)"; }
ports=("DIGITS_API_PORT=$DIGITS_API_PORT" "DIGITS_WORKER_METRICS_PORT=$DIGITS_WORKER_METRICS_PORT")
[ "${FLOWER:-1}" = 1 ] && ports+=("FLOWER_PORT=$FLOWER_PORT")
command -v prometheus >/dev/null && ports+=("PROMETHEUS_PORT=$PROMETHEUS_PORT")
for entry in "${ports[@]}"; do
  if port_taken "${entry#*=}"; then
    echo "run.sh: port ${entry#*=} is taken (${entry%%=*}); free it or choose another, e.g. ${entry%%=*}=$((${entry#*=} + 1)) make run" >&2
    trap - INT TERM EXIT  # nothing started yet: nothing to stop
    exit 1
  fi
done

say() { echo "run.sh $(date +%H:%M:%S): $*"; }

# supervise NAME LOGFILE COMMAND...: run COMMAND in a session of its own (Ctrl-C reaches only
# this script, which stops each service with SIGTERM: uvicorn drains, Celery shuts down warm)
# and start it again whenever it exits. What is left of its process group (pool processes of
# a killed worker, uvicorn children of a killed API) is killed before the restart.
supervise() {
  local name=$1 log=$2
  shift 2
  local child="" delay=1 restarts=0 started status
  stop_service() {
    trap '' INT TERM
    if [ -n "$child" ]; then
      kill -TERM "$child" 2>/dev/null || true
      wait "$child" 2>/dev/null || true
      kill -KILL -- "-$child" 2>/dev/null || true
    fi
    exit 0
  }
  trap stop_service INT TERM
  while true; do
    started=$SECONDS
    setsid "$@" >>"$log" 2>&1 &
    child=$!
    status=0
    wait "$child" || status=$?
    kill -KILL -- "-$child" 2>/dev/null || true
    if ((SECONDS - started >= 60)); then delay=1; fi
    restarts=$((restarts + 1))
    say "$name exited (status $status) after $((SECONDS - started)) s; restart $restarts in $delay s" |
      tee -a "$log"
    sleep "$delay" &
    child=$!
    wait "$child" || true
    child=""
    delay=$((delay * 2 > RESTART_MAX_DELAY_S ? RESTART_MAX_DELAY_S : delay * 2))
  done
}

pids=()
cleanup() {
  trap '' INT TERM
  trap - EXIT
  echo "stopping..."
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  exit 0
}
trap cleanup INT TERM EXIT

redis_up() { $BIN/python -c "import redis,sys; redis.Redis.from_url('$DIGITS_REDIS_URL', socket_connect_timeout=1).ping()" 2>/dev/null; }
NAMESPACE="${DIGITS_NAMESPACE:-digits}"
if redis_up; then
  echo "using Redis at $DIGITS_REDIS_URL, namespace $NAMESPACE"
  # A Redis someone else runs may hold another stack: never join its queues unasked.
  others=$($BIN/python -c "import time, redis; from common.contract import WORKER_HEARTBEAT_KEY as k; print(redis.Redis.from_url('$DIGITS_REDIS_URL').zcount(k, time.time() - 10, '+inf'))")
  if [ "$others" != 0 ]; then
    echo "run.sh: $others live worker process(es) already use namespace '$NAMESPACE' on $DIGITS_REDIS_URL (another stack); give this one its own: DIGITS_NAMESPACE=mine make run" >&2
    trap - INT TERM EXIT  # nothing started yet: nothing to stop
    exit 1
  fi
else
  command -v redis-server >/dev/null || scripts/ensure-tools.sh redis-server
  port=$($BIN/python -c "from urllib.parse import urlparse; print(urlparse('$DIGITS_REDIS_URL').port or 6379)")
  echo "no Redis at $DIGITS_REDIS_URL: starting redis-server on port $port (data in $RUN_DIR/redis)"
  mkdir -p "$RUN_DIR/redis"
  # A memory cap, as in compose: at the cap new work is refused (503 store_full), queued
  # and running jobs still finish, nothing is evicted (docs/DESIGN.md, "Redis memory").
  # AOF: a restarted redis-server (supervised too) comes back with its queues and jobs.
  supervise redis "$LOG/redis.log" redis-server --port "$port" --bind 127.0.0.1 \
    --dir "$RUN_DIR/redis" --appendonly yes --appendfsync everysec --save "" \
    --maxmemory "${REDIS_MAXMEMORY:-1gb}" --maxmemory-policy noeviction &
  pids+=($!)
  for _ in $(seq 50); do redis_up && break; sleep 0.1; done
  redis_up || { echo "redis-server did not start; see $LOG/redis.log"; exit 1; }
fi

supervise worker "$LOG/worker.log" $BIN/python -m workers &
pids+=($!)
supervise api "$LOG/api.log" $BIN/python -m api &
pids+=($!)
# --- Flower switch (issue 12): FLOWER=0 leaves it out (`make run` passes FLOWER=0 unless
# FLOWER=1 is given); credentials through the environment, never argv (`ps` shows argv).
flower_line="  Flower     off (FLOWER=1 make run starts it)"
if [ "${FLOWER:-1}" = 1 ]; then
  FLOWER_BASIC_AUTH="$FLOWER_USER:$FLOWER_PASSWORD" supervise flower "$LOG/flower.log" \
    $BIN/celery -A workers.app:celery_app flower --port="$FLOWER_PORT" --address=127.0.0.1 &
  pids+=($!)
  flower_line="  Flower     http://127.0.0.1:$FLOWER_PORT     (user $FLOWER_USER, password $FLOWER_PASSWORD)"
fi
# --- end Flower switch

# --- Prometheus (issue 13): the only store of counts; /v1/slo and /dashboard read it. The
# repo's rules, scrape every PROMETHEUS_INTERVAL of the API and the workers' metrics port.
# Without a prometheus binary (and none installable) the service still runs: the dashboard
# then shows its numbers as unknown.
prometheus_line="  Prometheus not installed (apt-get install prometheus): dashboard numbers unknown"
command -v prometheus >/dev/null || scripts/ensure-tools.sh prometheus || true
if command -v prometheus >/dev/null; then
  mkdir -p "$RUN_DIR/prometheus-data"
  sed -e "s|@INTERVAL@|${PROMETHEUS_INTERVAL:-5s}|" -e "s|@RULES@|$PWD/deploy/prometheus/rules|" \
    -e "s|@API_TARGET@|127.0.0.1:$DIGITS_API_PORT|" -e "s|@WORKER_TARGET@|127.0.0.1:${DIGITS_WORKER_METRICS_PORT:-9100}|" \
    deploy/prometheus/local.yml >"$RUN_DIR/prometheus.yml"
  supervise prometheus "$LOG/prometheus.log" prometheus --config.file="$RUN_DIR/prometheus.yml" \
    --storage.tsdb.path="$RUN_DIR/prometheus-data" --storage.tsdb.retention.time=30d \
    --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" &
  pids+=($!)
  prometheus_line="  Prometheus $DIGITS_PROMETHEUS_URL     (rules: deploy/prometheus/rules)"
fi
# --- end Prometheus

for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$DIGITS_API_PORT/readyz?workers=1" >/dev/null 2>&1 && break
  sleep 0.2
done
cat <<INFO

  API        http://127.0.0.1:$DIGITS_API_PORT        (docs: /docs, ready: /readyz, metrics: /metrics)
  Dashboard  http://127.0.0.1:$DIGITS_API_PORT/dashboard
$flower_line
$prometheus_line
  Workers    metrics http://127.0.0.1:$DIGITS_WORKER_METRICS_PORT/metrics
  Redis      $DIGITS_REDIS_URL     (namespace $NAMESPACE: DIGITS_NAMESPACE)
  Logs       $LOG/{api,worker,flower,redis,prometheus}.log

  Try: curl -F file=@tests/data/digit7.png http://127.0.0.1:$DIGITS_API_PORT/v1/predict
  A service that exits is restarted (logged here). Ctrl-C stops everything.
INFO
curl -fsS "http://127.0.0.1:$DIGITS_API_PORT/readyz?workers=1" >/dev/null 2>&1 || echo "  (not ready yet: see $LOG/worker.log)"
# Until Ctrl-C or SIGTERM: the supervisors never return on their own.
wait || true
