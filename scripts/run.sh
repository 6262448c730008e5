#!/usr/bin/env bash
# Sets everything up and runs the sluice broker on its embedded defaults:
# data in ./data, Kafka 127.0.0.1:9092, AMQP 127.0.0.1:5672, HTTP 127.0.0.1:9600.
# Extra arguments are passed to sluice (see ./build/sluice --help).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh build
exec ./build/sluice "$@"
