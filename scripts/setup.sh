#!/usr/bin/env bash
# Installs what Sluice needs to build, run and test on Debian 12 (run as root).
# Only calls apt when a package is missing, so repeated runs are fast.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config clang libclang-rt-14-dev
  libuv1-dev libsqlite3-dev libisal-dev libcmocka-dev
  python3 python3-pytest python3-pika amqp-tools
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Real clients the integration tests drive.
"$(dirname "$0")/setup-kafka-clients.sh"
"$(dirname "$0")/setup-rsyslog.sh"
"$(dirname "$0")/setup-amqp-clients.sh"
