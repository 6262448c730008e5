#!/usr/bin/env bash
# Installs rsyslog and its Kafka output module (Debian rsyslog-kafka: omkafka), used by
# tests/integration/kafka/test_rsyslog_pipeline.py. The test runs its own private
# rsyslogd instance with its own config; the system rsyslog service is not needed (in a
# container policy-rc.d usually keeps apt from starting it).
# Idempotent: apt runs only for a missing package. Run as root (or with sudo).
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

PACKAGES=(rsyslog rsyslog-kafka)
missing=()
for p in "${PACKAGES[@]}"; do installed "$p" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup-rsyslog: installing ${missing[*]}"
  $SUDO apt-get -o DPkg::Lock::Timeout=300 update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}"
fi
