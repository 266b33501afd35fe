#!/usr/bin/env bash
# Installs the system tools the test suite drives for real, where they are missing:
# redis-server (throw-away instances), promtool (rule checks), prometheus (`make run` and the
# observability tests), chromium (dashboard test),
# nginx (the compose load-balancer config is exercised for real), and the handwriting fonts
# that the synthetic training styles and the robustness sets are drawn from (training/fonts.py
# lists them; `fonts` needs the venv's Python, VENV_PYTHON, default .venv/bin/python).
set -euo pipefail
# Usage: scripts/ensure-tools.sh [command ...]  (default: every tool below)
declare -A package=([redis-server]=redis-server [promtool]=prometheus [prometheus]=prometheus [chromium]=chromium [nginx]=nginx-light)
wanted=("$@")
[ ${#wanted[@]} -eq 0 ] && wanted=(redis-server promtool prometheus chromium nginx fonts)
missing=()
for tool in "${wanted[@]}"; do
  if [ "$tool" = fonts ]; then
    read -r -a fonts <<<"$("${VENV_PYTHON:-.venv/bin/python}" -m training.fonts)"
    missing+=("${fonts[@]}")
    continue
  fi
  command -v "$tool" >/dev/null || missing+=("${package[$tool]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
# Debian starts the services it installs; the suite starts its own instances instead, so
# service start-up is refused for the duration of the install (policy-rc.d exit 101).
policy=/usr/sbin/policy-rc.d
added_policy=""
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod +x "$policy"
  added_policy=1
fi
trap '[ -n "$added_policy" ] && $SUDO rm -f "$policy"' EXIT
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
