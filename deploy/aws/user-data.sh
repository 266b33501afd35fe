#!/bin/bash
# EC2 user data (cloud-init runs it once, as root, at first boot) for Ubuntu 24.04 LTS:
# installs Docker Engine + the compose plugin, checks out the service, writes .env from
# SSM Parameter Store and starts the stack. Everything is logged to /var/log/digits-bootstrap.log.
#
# Settings (edit here, or prepend `export VAR=...` lines when you paste this into a launch template):
#   DIGITS_REPO      git URL of this repository (a read-only deploy key or a public mirror)
#   DIGITS_REF       branch, tag or commit to run
#   DIGITS_SSM_PATH  SSM path holding one SecureString per .env variable, e.g.
#                    /digits/prod/REDIS_PASSWORD, /digits/prod/DIGITS_API_KEYS, ...
#   WORKERS          worker containers on this host (one per 2 vCPUs: each runs DIGITS_WORKER_CONCURRENCY=1
#                    process by default, and the API and nginx share the host's other cores)
# Set by deploy/aws/cloudformation.yaml for the Auto Scaling group (empty: one host, local Redis):
#   DIGITS_REDIS_HOST    ElastiCache primary endpoint: Redis over TLS, the local redis not run
#   DIGITS_REDIS_SECRET  Secrets Manager secret holding {"token": "<AUTH token>"}
#   DIGITS_METRICS_ASG   publish Digits/QueueOldestAgeSeconds for this Auto Scaling group
# The instance profile needs ssm:GetParametersByPath on that path and kms:Decrypt
# (deploy/aws/iam-policy.json).
set -euo pipefail
exec > >(tee -a /var/log/digits-bootstrap.log) 2>&1

DIGITS_REPO="${DIGITS_REPO:-https://github.com/example/digits-service.git}"
DIGITS_REF="${DIGITS_REF:-main}"
DIGITS_SSM_PATH="${DIGITS_SSM_PATH:-/digits/prod}"
DIGITS_DIR="${DIGITS_DIR:-/opt/digits}"
WORKERS="${WORKERS:-$(( $(nproc) / 2 > 0 ? $(nproc) / 2 : 1 ))}"
DIGITS_REDIS_HOST="${DIGITS_REDIS_HOST:-}"
DIGITS_REDIS_SECRET="${DIGITS_REDIS_SECRET:-}"
DIGITS_METRICS_ASG="${DIGITS_METRICS_ASG:-}"

log() { printf '%s digits-bootstrap: %s\n' "$(date -u +%FT%TZ)" "$*"; }

region() {
  curl -fsS -X PUT http://169.254.169.254/latest/api/token \
      -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' \
    | xargs -I{} curl -fsS -H 'X-aws-ec2-metadata-token: {}' \
      http://169.254.169.254/latest/meta-data/placement/region
}

install_docker() {
  log "installing Docker Engine and the compose plugin from download.docker.com"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q ca-certificates curl git unzip
  install -m 0755 -d /etc/apt/keyrings
  curl -fsSL https://download.docker.com/linux/ubuntu/gpg -o /etc/apt/keyrings/docker.asc
  chmod a+r /etc/apt/keyrings/docker.asc
  # shellcheck disable=SC1091  # os-release exists on every supported image
  codename="$(. /etc/os-release && echo "${VERSION_CODENAME}")"
  echo "deb [arch=$(dpkg --print-architecture) signed-by=/etc/apt/keyrings/docker.asc]" \
    "https://download.docker.com/linux/ubuntu ${codename} stable" \
    > /etc/apt/sources.list.d/docker.list
  apt-get update -q
  apt-get install -y -q docker-ce docker-ce-cli containerd.io docker-buildx-plugin docker-compose-plugin
  systemctl enable --now docker
}

install_awscli() {
  if command -v aws >/dev/null 2>&1; then return; fi
  log "installing AWS CLI v2"
  local tmp
  tmp="$(mktemp -d)"
  curl -fsSL "https://awscli.amazonaws.com/awscli-exe-linux-$(uname -m).zip" -o "${tmp}/awscliv2.zip"
  unzip -q "${tmp}/awscliv2.zip" -d "${tmp}"
  "${tmp}/aws/install"
  rm -rf "${tmp}"
}

checkout() {
  log "checking out ${DIGITS_REPO} at ${DIGITS_REF} into ${DIGITS_DIR}"
  if [ ! -d "${DIGITS_DIR}/.git" ]; then
    git clone --quiet "${DIGITS_REPO}" "${DIGITS_DIR}"
  fi
  git -C "${DIGITS_DIR}" fetch --quiet --tags origin "${DIGITS_REF}"
  git -C "${DIGITS_DIR}" checkout --quiet --detach FETCH_HEAD
}

write_env() {
  log "writing ${DIGITS_DIR}/.env from SSM ${DIGITS_SSM_PATH}"
  local region env_file
  region="$(region)"
  env_file="${DIGITS_DIR}/.env"
  umask 077
  # Each parameter's last path component is the variable name: /digits/prod/DIGITS_API_KEYS -> DIGITS_API_KEYS.
  aws ssm get-parameters-by-path --region "${region}" --path "${DIGITS_SSM_PATH}" \
      --recursive --with-decryption \
      --query 'Parameters[].[Name,Value]' --output text \
    | while IFS=$'\t' read -r name value; do
        printf '%s=%s\n' "${name##*/}" "${value}"
      done > "${env_file}.tmp"
  if [ -n "${DIGITS_REDIS_HOST}" ]; then
    # ElastiCache: TLS (rediss://, certificate verified) with the AUTH token. REDIS_PASSWORD is
    # set too because the base compose file requires it; the local redis is never started.
    local token
    token="$(aws secretsmanager get-secret-value --region "${region}" \
        --secret-id "${DIGITS_REDIS_SECRET}" --query SecretString --output text \
      | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')"
    printf 'REDIS_PASSWORD=%s\nREDIS_URL=rediss://:%s@%s:6379/0?ssl_cert_reqs=required\n' \
      "${token}" "${token}" "${DIGITS_REDIS_HOST}" >> "${env_file}.tmp"
  fi
  for required in REDIS_PASSWORD DIGITS_API_KEYS FLOWER_USER FLOWER_PASSWORD GRAFANA_ADMIN_PASSWORD; do
    grep -q "^${required}=" "${env_file}.tmp" || { log "missing ${DIGITS_SSM_PATH}/${required}"; exit 1; }
  done
  mv "${env_file}.tmp" "${env_file}"
}

start_stack() {
  log "building images and starting the stack with ${WORKERS} worker container(s)"
  cd "${DIGITS_DIR}"
  docker compose build --pull
  if [ -n "${DIGITS_REDIS_HOST}" ]; then
    docker compose -f docker-compose.yml -f deploy/aws/compose.elasticache.yml \
      up -d --wait --scale worker="${WORKERS}" api worker nginx
  else
    docker compose up -d --wait --scale worker="${WORKERS}"
  fi
  docker compose ps
}

publish_queue_age() {
  # Every minute: the oldest queued job's age (the same for every host: Redis is shared), as
  # Digits/QueueOldestAgeSeconds; the stack's QueueAgeHigh/Low alarms scale the group on it.
  [ -n "${DIGITS_METRICS_ASG}" ] || return 0
  log "publishing queue age to CloudWatch for ${DIGITS_METRICS_ASG}"
  cat > /usr/local/bin/digits-queue-age <<SCRIPT
#!/bin/bash
set -euo pipefail
key="\$(sed -n 's/^DIGITS_API_KEYS=\\([^,]*\\).*/\\1/p' ${DIGITS_DIR}/.env)"
age="\$(curl -fsS -m 5 -H "X-API-Key: \${key}" http://127.0.0.1:8000/v1/slo \\
  | python3 -c 'import json, sys; q = json.load(sys.stdin)["queues"]; print(max(v["oldest_age_s"] for v in q.values()))')"
aws cloudwatch put-metric-data --region "$(region)" --namespace Digits \\
  --metric-name QueueOldestAgeSeconds --unit Seconds --value "\${age}" \\
  --dimensions AutoScalingGroupName="${DIGITS_METRICS_ASG}"
SCRIPT
  chmod 0755 /usr/local/bin/digits-queue-age
  printf '[Unit]\nDescription=digits queue age to CloudWatch\n[Service]\nType=oneshot\nExecStart=/usr/local/bin/digits-queue-age\n' \
    > /etc/systemd/system/digits-queue-age.service
  printf '[Unit]\nDescription=every minute\n[Timer]\nOnBootSec=2min\nOnUnitActiveSec=60s\n[Install]\nWantedBy=timers.target\n' \
    > /etc/systemd/system/digits-queue-age.timer
  systemctl daemon-reload
  systemctl enable --now digits-queue-age.timer
}

install_docker
install_awscli
checkout
write_env
start_stack
publish_queue_age
log "done: http://$(hostname -I | awk '{print $1}'):8000/readyz"
