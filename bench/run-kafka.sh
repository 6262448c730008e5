#!/usr/bin/env bash
# bench/run-kafka.sh: Sluice over the Kafka protocol, through librdkafka,
# against references measured in the same run (see docs/benchmarks.md, "Kafka").
#
# Builds sluice (Release, in BUILD_DIR) and bench_kafka (cc over
# bench/kafka/kafka_bench.c with pkg-config rdkafka; CMake's bench glob does not
# build it because it links sluicelib, not librdkafka). Then it starts, each on a
# free 127.0.0.1 port with its own temp dir:
#   sluice      twice: log.flush=batch (the default: fsync before acks) and
#               log.flush=os (for reference)
#   redis-server  in memory (--save "" --appendonly no): the Redis Streams reference
#   iperf3 -s   loopback TCP bandwidth, measured at the start and at the end
# and REPS times, interleaved (rotating the order: the disk's speed drifts),
# each measurement after a `sync`, each rep's topics deleted after it:
#   produce     1 KiB x N_1K and 100 B x N_100, acks=1 and acks=all, each sluice
#   consume     the acks=1 topics back from offset 0 (assign, no group join),
#               timed from the first message to the last; twice: one
#               rd_kafka_consumer_poll per message, then CONSUME_BATCH messages
#               per rd_kafka_consume_batch_queue call
#   latency     LAT_RATE msg/s of LAT_SIZE bytes for LAT_SECONDS (+1 s warm-up),
#               acks=1, linger.ms=0, fetch.wait.max.ms=10, fetch.min.bytes=1;
#               also the produce-ack latency and the CPU pressure (PSI) meanwhile
#   xadd        the same sizes and counts into a Redis stream, pipelined
# and prints medians, ranges and the ratios against the targets:
#   producer acks=1 1 KiB MB/s >= 2x Redis XADD 1 KiB MB/s
#   consumer 1 KiB MB/s        >= 0.5x iperf3 loopback MB/s (both consumers shown)
#   p99 end-to-end latency     <  5 ms at 10,000 msg/s
# Everything it started is stopped by PID and the temp dir removed at exit.
# Whole run: about 90 s here with the defaults, 10 s more with PERF=1; no rep
# starts that would end past BUDGET_S (judged by the last rep's duration).
#
# Environment: BUILD_DIR (default build-release), SLUICE_BIN (use this sluice,
# do not build), BENCH_DIR (parent of the temp dir, default $TMPDIR or /tmp;
# /dev/shm takes the disk out, and with it the cost of fsync),
# REPS (default 3), N_1K (default 500000), N_100 (default 2000000),
# LAT_RATE (10000), LAT_SECONDS (5), LAT_SIZE (1024), IPERF_SECONDS (3),
# CONSUME_BATCH (1000),
# SLUICE_GLIBC_TUNABLES (GLIBC_TUNABLES for sluice only, e.g.
# glibc.malloc.trim_threshold=536870912:glibc.malloc.mmap_threshold=33554432
# to test malloc settings), PERF=1 (after the reps, profile sluice with perf
# during one more 1 KiB acks=1 produce and one consume per policy, and print
# the top symbols).
# Needs: cmake, cc, librdkafka-dev, redis-server, iperf3, python3.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build-release}
BENCH_DIR=${BENCH_DIR:-${TMPDIR:-/tmp}}
REPS=${REPS:-3}
N_1K=${N_1K:-500000}
N_100=${N_100:-2000000}
LAT_RATE=${LAT_RATE:-10000}
LAT_SECONDS=${LAT_SECONDS:-5}
LAT_SIZE=${LAT_SIZE:-1024}
IPERF_SECONDS=${IPERF_SECONDS:-3}
CONSUME_BATCH=${CONSUME_BATCH:-1000}
BUDGET_S=${BUDGET_S:-200} # no rep may end after this: the run stays under 4 minutes
MODE_MAX_S=60             # bound on one bench_kafka call
START=$(date +%s)

for tool in redis-server iperf3 python3 pkg-config cc; do
	command -v "$tool" >/dev/null || { echo "run-kafka.sh: $tool is not installed" >&2; exit 1; }
done
pkg-config --exists rdkafka || { echo "run-kafka.sh: librdkafka-dev is not installed" >&2; exit 1; }

# ---- build ----
if [[ -n ${SLUICE_BIN:-} ]]; then
	SLUICE=$SLUICE_BIN
	echo "sluice: $SLUICE (not rebuilt)" >&2
else
	if [[ ! -f $BUILD_DIR/CMakeCache.txt ]]; then
		echo "configuring $BUILD_DIR (Release)" >&2
		cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
	fi
	if ! out=$(make -C "$BUILD_DIR" -j"$(nproc)" sluice 2>&1); then
		echo "$out" >&2
		echo "build failed" >&2
		exit 1
	fi
	type=$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$BUILD_DIR/CMakeCache.txt")
	echo "sluice: ${type:-default (RelWithDebInfo)} build in $BUILD_DIR" >&2
	SLUICE=$BUILD_DIR/sluice
fi
mkdir -p "$BUILD_DIR"
BENCH=$BUILD_DIR/bench_kafka
SRC=$ROOT/bench/kafka/kafka_bench.c
if [[ ! -x $BENCH || $SRC -nt $BENCH ]]; then
	# shellcheck disable=SC2046 # pkg-config output is a list of flags
	cc -std=c11 -O2 -g -Wall -Wextra -Werror -o "$BENCH" "$SRC" \
		$(pkg-config --cflags --libs rdkafka) -lpthread
fi
echo "bench_kafka: $BENCH (librdkafka $(pkg-config --modversion rdkafka))" >&2

# ---- processes we start, stopped by PID at exit ----
WORK=$(mktemp -d "$BENCH_DIR/sluice-bench-kafka.XXXXXX")
PIDS=()
stop_pid() { # pid: TERM, wait up to 15 s, then KILL
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 150; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}
cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_port() { # port name: wait (10 s at most) until something accepts on it
	local i
	for ((i = 0; i < 100; i++)); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	echo "run-kafka.sh: $2 did not start listening on port $1" >&2
	exit 1
}

POLICIES=(batch os)
declare -A PORT PID_OF
for pol in "${POLICIES[@]}"; do
	mkdir -p "$WORK/sluice-$pol"
	printf 'log.flush = %s\nlog.level = warn\n' "$pol" >"$WORK/sluice-$pol.conf"
	PORT[$pol]=$(free_port)
	# shellcheck disable=SC2086 # an optional NAME=VALUE word for env
	env ${SLUICE_GLIBC_TUNABLES:+GLIBC_TUNABLES=$SLUICE_GLIBC_TUNABLES} \
		"$SLUICE" --config "$WORK/sluice-$pol.conf" --data-dir "$WORK/sluice-$pol/data" \
		--port-kafka "${PORT[$pol]}" --port-amqp 0 --port-http 0 >"$WORK/sluice-$pol.log" 2>&1 &
	PID_OF[$pol]=$!
	PIDS+=($!)
	wait_port "${PORT[$pol]}" "sluice ($pol)"
done
REDIS_PORT=$(free_port)
mkdir -p "$WORK/redis"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK/redis" \
	--daemonize no --loglevel warning >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
wait_port "$REDIS_PORT" redis-server
IPERF_PORT=$(free_port)
iperf3 -s -p "$IPERF_PORT" -B 127.0.0.1 >"$WORK/iperf3-server.log" 2>&1 &
PIDS+=($!)
wait_port "$IPERF_PORT" "iperf3 -s"

echo "sluice kafka benchmark: $(date -u +%Y-%m-%dT%H:%MZ), $(uname -r), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
if [[ -n ${SLUICE_BIN:-} ]]; then
	src="given by SLUICE_BIN"
else
	src="built from tree $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '(not git)')"
fi
echo "sluice binary $SLUICE ($src)${SLUICE_GLIBC_TUNABLES:+ with GLIBC_TUNABLES=$SLUICE_GLIBC_TUNABLES}" >&2
echo "sluice $(for p in "${POLICIES[@]}"; do printf '%s=:%s ' "$p" "${PORT[$p]}"; done)redis=:$REDIS_PORT, $(redis-server --version | cut -d' ' -f3), 1 KiB x $N_1K, 100 B x $N_100, $REPS reps, data in $WORK ($(df -PT "$WORK" | awk 'NR==2 { print $1 " " $2 }'))" >&2

declare -A R
add() { R[$1]="${R[$1]:-} $2"; }
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }

# PERF=1: where sluice spends its time during one more 1 KiB acks=1 produce
# and consume per policy (flat profile of the sluice process, top symbols).
perf_profiles() {
	local pol b what ppid
	for pol in "${POLICIES[@]}"; do
		b=127.0.0.1:${PORT[$pol]}
		for what in produce consume; do
			settle
			perf record -F 2999 -o "$WORK/perf-$pol-$what.data" -p "${PID_OF[$pol]}" >/dev/null 2>&1 &
			ppid=$!
			sleep 0.5
			if [[ $what == produce ]]; then
				run_bench produce -b "$b" -t perf-1k -s 1024 -n "$N_1K" -a 1 >/dev/null || true
			else
				run_bench consume -b "$b" -t perf-1k -n "$N_1K" >/dev/null || true
			fi
			kill -INT "$ppid" 2>/dev/null || true
			wait "$ppid" 2>/dev/null || true
			echo
			echo "perf: sluice (log.flush=$pol) during a 1 KiB acks=1 $what, top symbols:"
			{ perf report -i "$WORK/perf-$pol-$what.data" --no-children --sort dso,sym --stdio 2>/dev/null |
				grep -v '^#' | grep . | head -25; } || true
		done
		run_bench delete -b "$b" -t perf-1k >/dev/null || true
	done
}

# Runs bench_kafka with a time bound; keeps its RESULT line; prints it.
run_bench() {
	local line
	if ! line=$(timeout $((MODE_MAX_S + 15)) "$BENCH" "$@" --max-seconds "$MODE_MAX_S" | grep '^RESULT'); then
		echo "run-kafka.sh: bench_kafka $* failed" >&2
		return 1
	fi
	echo "$line" >>"$WORK/results"
	echo "$line"
}

iperf_mbps() {
	iperf3 -c 127.0.0.1 -p "$IPERF_PORT" -t "$IPERF_SECONDS" -J 2>/dev/null |
		python3 -c 'import json, sys; print("%.1f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 8e6))'
}

# Writes back what earlier steps left dirty, so that no measurement pays for
# the one before it (log.flush=os leaves hundreds of MB to the kernel).
settle() { timeout 60 sync || true; }

# One rep of one sluice: produce, consume back, latency; then deletes the
# rep's topics. $1 policy, $2 rep.
sluice_rep() {
	local pol=$1 rep=$2 b=127.0.0.1:${PORT[$1]} size n acks t line topics=""
	for size in 1024 100; do
		n=$N_1K
		((size == 100)) && n=$N_100
		for acks in 1 all; do
			t=p$size-a$acks-r$rep
			topics+=${topics:+,}$t
			settle
			line=$(run_bench produce -b "$b" -t "$t" -s "$size" -n "$n" -a "$acks") || continue
			add "$pol.prod.$size.$acks" "$(field "$line" mbps)"
			add "$pol.prodm.$size.$acks" "$(field "$line" msgps)"
		done
		if line=$(run_bench consume -b "$b" -t "p$size-a1-r$rep" -n "$n"); then
			add "$pol.cons.$size" "$(field "$line" mbps)"
			add "$pol.consm.$size" "$(field "$line" msgps)"
		fi
		# The same topic again through the batch API (CONSUME_BATCH messages
		# per rd_kafka_consume_batch_queue call): the client's per-message
		# cost, which shares the machine's cores with the broker, drops.
		line=$(run_bench consume -b "$b" -t "p$size-a1-r$rep" -n "$n" --batch "$CONSUME_BATCH") || continue
		add "$pol.consb.$size" "$(field "$line" mbps)"
		add "$pol.consbm.$size" "$(field "$line" msgps)"
	done
	topics+=,lat-r$rep
	settle
	if line=$(run_bench latency -b "$b" -t "lat-r$rep" -s "$LAT_SIZE" -r "$LAT_RATE" -d "$LAT_SECONDS" -a 1); then
		add "$pol.p50" "$(field "$line" p50_ms)"
		add "$pol.p99" "$(field "$line" p99_ms)"
		add "$pol.p999" "$(field "$line" p999_ms)"
		add "$pol.ack50" "$(field "$line" ack_p50_ms)"
		add "$pol.ack99" "$(field "$line" ack_p99_ms)"
		add "$pol.cpupsi" "$(field "$line" cpu_pressure_pct)"
	fi
	run_bench delete -b "$b" -t "$topics" >/dev/null || true
}

redis_rep() {
	local size n line
	for size in 1024 100; do
		n=$N_1K
		((size == 100)) && n=$N_100
		line=$(run_bench xadd -R "127.0.0.1:$REDIS_PORT" -t "x$size" -s "$size" -n "$n") || continue
		add "redis.$size" "$(field "$line" mbps)"
		add "redism.$size" "$(field "$line" msgps)"
	done
	# Frees the memory before the next measurement (a 1 KiB stream is ~0.6 GB).
	timeout 30 redis-cli -p "$REDIS_PORT" del x1024 x100 >/dev/null
}

echo "iperf3 (start) ..." >&2
add iperf "$(iperf_mbps)"
UNITS=(batch os redis)
last_rep_s=0
for ((rep = 0; rep < REPS; rep++)); do
	rep_start=$(date +%s)
	if ((rep_start - START + last_rep_s > BUDGET_S)); then
		echo "time budget reached: $rep reps instead of $REPS" >&2
		break
	fi
	echo "rep $((rep + 1))/$REPS ..." >&2
	for ((k = 0; k < ${#UNITS[@]}; k++)); do
		u=${UNITS[$(((k + rep) % ${#UNITS[@]}))]}
		if [[ $u == redis ]]; then redis_rep; else sluice_rep "$u" "$rep"; fi
	done
	last_rep_s=$(($(date +%s) - rep_start))
done
echo "iperf3 (end) ..." >&2
add iperf "$(iperf_mbps)"

median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; else print "n/a" }'; }
range() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { print lo "-" hi }'; }
maxof() { tr ' ' '\n' <<<"$1" | grep . | sort -g | tail -1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2fx", a / b; else print "n/a" }'; }
row() { # label key [unit]
	printf '%-52s %10s %19s\n' "$1" "$(median "${R[$2]:-}")" "($(range "${R[$2]:-}"))"
}

IPERF=$(maxof "${R[iperf]}")
echo
echo "references (median of reps, range)                       MB/s"
printf '%-52s %10s %19s\n' "iperf3 loopback TCP (the faster of start/end)" "$IPERF" "($(range "${R[iperf]}"))"
row "Redis XADD 1 KiB, pipelined" redis.1024
row "Redis XADD 100 B, pipelined" redis.100
for pol in "${POLICIES[@]}"; do
	echo
	echo "sluice log.flush=$pol                                       MB/s (msg/s median)"
	for size in 1024 100; do
		for acks in 1 all; do
			printf '%-52s %10s %19s  %s msg/s\n' "produce $size B acks=$acks" "$(median "${R[$pol.prod.$size.$acks]:-}")" \
				"($(range "${R[$pol.prod.$size.$acks]:-}"))" "$(median "${R[$pol.prodm.$size.$acks]:-}")"
		done
		printf '%-52s %10s %19s  %s msg/s\n' "consume $size B (from offset 0, poll per message)" "$(median "${R[$pol.cons.$size]:-}")" \
			"($(range "${R[$pol.cons.$size]:-}"))" "$(median "${R[$pol.consm.$size]:-}")"
		printf '%-52s %10s %19s  %s msg/s\n' "consume $size B (from offset 0, batches of $CONSUME_BATCH)" "$(median "${R[$pol.consb.$size]:-}")" \
			"($(range "${R[$pol.consb.$size]:-}"))" "$(median "${R[$pol.consbm.$size]:-}")"
	done
	printf '%-52s %10s %19s\n' "latency p50 ms, $LAT_SIZE B at $LAT_RATE msg/s" "$(median "${R[$pol.p50]:-}")" "($(range "${R[$pol.p50]:-}"))"
	printf '%-52s %10s %19s\n' "latency p99 ms" "$(median "${R[$pol.p99]:-}")" "($(range "${R[$pol.p99]:-}"))"
	printf '%-52s %10s %19s\n' "latency p99.9 ms" "$(median "${R[$pol.p999]:-}")" "($(range "${R[$pol.p999]:-}"))"
	printf '%-52s %10s %19s\n' "  produce ack (acks=1) p50 ms" "$(median "${R[$pol.ack50]:-}")" "($(range "${R[$pol.ack50]:-}"))"
	printf '%-52s %10s %19s\n' "  produce ack (acks=1) p99 ms" "$(median "${R[$pol.ack99]:-}")" "($(range "${R[$pol.ack99]:-}"))"
	printf '%-52s %10s %19s\n' "  CPU pressure during it, % of time (PSI some)" "$(median "${R[$pol.cpupsi]:-}")" "($(range "${R[$pol.cpupsi]:-}"))"
done

verdict_ge() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { print (a + 0 > 0 && b + 0 > 0 && a / b >= t) ? "met" : "MISSED" }'; }
verdict_lt() { awk -v a="$1" -v t="$2" 'BEGIN { print (a != "n/a" && a + 0 > 0 && a + 0 < t) ? "met" : "MISSED" }'; }
echo
printf '%-58s %8s  %s\n' "target (medians)" "ratio" "verdict"
for pol in "${POLICIES[@]}"; do
	p=$(median "${R[$pol.prod.1024.1]:-}")
	r=$(median "${R[redis.1024]:-}")
	printf '%-58s %8s  %s\n' "producer acks=1 1 KiB / Redis XADD 1 KiB (flush=$pol)" "$(ratio "$p" "$r")" "$(verdict_ge "$p" "$r" 2) (>= 2x)"
	p=$(median "${R[$pol.prod.100.1]:-}")
	r=$(median "${R[redis.100]:-}")
	printf '%-58s %8s  %s\n' "producer acks=1 100 B / Redis XADD 100 B (flush=$pol)" "$(ratio "$p" "$r")" "(no target)"
	p=$(median "${R[$pol.consb.1024]:-}")
	printf '%-58s %8s  %s\n' "consumer 1 KiB, batch API / iperf3 loopback (flush=$pol)" "$(ratio "$p" "$IPERF")" "$(verdict_ge "$p" "$IPERF" 0.5) (>= 0.5x)"
	p=$(median "${R[$pol.cons.1024]:-}")
	printf '%-58s %8s  %s\n' "consumer 1 KiB, poll per message / iperf3 (flush=$pol)" "$(ratio "$p" "$IPERF")" "$(verdict_ge "$p" "$IPERF" 0.5) (>= 0.5x)"
	p=$(median "${R[$pol.p99]:-}")
	printf '%-58s %8s  %s\n' "p99 latency ms at $LAT_RATE msg/s (flush=$pol)" "$p" "$(verdict_lt "$p" 5) (< 5 ms)"
done
echo
echo "bench_kafka RESULT lines:"
cat "$WORK/results"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); total time: $(($(date +%s) - START)) s"
for pol in "${POLICIES[@]}"; do
	if grep -qE 'ERROR|WARN' "$WORK/sluice-$pol.log"; then
		echo "sluice ($pol) logged:"
		{ grep -E 'ERROR|WARN' "$WORK/sluice-$pol.log" | head -5; } || true
	fi
done
if [[ -n ${PERF:-} ]]; then
	if command -v perf >/dev/null; then perf_profiles; else echo "PERF=1: perf is not installed" >&2; fi
fi
