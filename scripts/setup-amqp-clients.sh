#!/usr/bin/env bash
# Installs the real AMQP clients the integration tests drive (tests/integration/amqp):
# python3-pika and amqp-tools from apt, and amqplib from npm into
# tests/integration/amqp/node/node_modules (exact version from package-lock.json).
# Idempotent: apt runs only for a missing package, npm only when node_modules lacks the
# locked amqplib, so a second run takes well under a second. Run as root (or with sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

PACKAGES=(python3-pika amqp-tools)
missing=()
for p in "${PACKAGES[@]}"; do installed "$p" || missing+=("$p"); done
# node and npm: only if the commands are missing (a NodeSource nodejs bundles npm and
# conflicts with Debian's npm package).
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup-amqp-clients: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

node_dir=tests/integration/amqp/node
want=$(sed -n 's/.*"amqplib": *"\([0-9][0-9.]*\)".*/\1/p' "$node_dir/package.json" | head -1)
have=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$node_dir/node_modules/amqplib/package.json" 2>/dev/null | head -1 || true)
if [ -z "$want" ] || [ "$have" != "$want" ]; then
  echo "setup-amqp-clients: npm ci in $node_dir (amqplib ${have:-missing} -> ${want:-locked})"
  (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error)
fi
