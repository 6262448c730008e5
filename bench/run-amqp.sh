#!/usr/bin/env bash
# bench/run-amqp.sh: Sluice over AMQP 0-9-1, through librabbitmq (rabbitmq-c),
# against RabbitMQ 3.10 (Debian rabbitmq-server) measured in the same run (see
# docs/benchmarks.md, "AMQP").
#
# Builds sluice (Release, in BUILD_DIR) and amqp_bench (cc over
# bench/amqp/amqp_bench.c with pkg-config librabbitmq; CMake's bench glob does
# not build it because it links sluicelib, not librabbitmq). Then it starts,
# each on a free 127.0.0.1 port with its own temp dir:
#   sluice      the default configuration (log.flush=batch)
#   rabbitmq    via /work/shared/tools/rabbitmq-local.sh (RABBITMQ_LOCAL), defaults
# and REPS times, interleaved (the broker order alternates each rep), all
# latency reps first (after SETTLE_S quiet seconds), then the throughput reps:
#   throughput  one publisher and one consumer (separate connections, one queue,
#               prefetch 1000, one multiple ack every 100), 100 B x N_100 and
#               1 KiB x N_1K, in the modes transient (non-durable queue,
#               delivery_mode 1), persistent (durable queue, delivery_mode 2)
#               and confirm (persistent + publisher confirms, window 1000);
#               msg/s from the first publish until the consumer has them all;
#               each row twice, with two publisher styles (same librabbitmq
#               calls): "plain", every publish pushed as its own TCP segment,
#               and "corked", the socket corked and flushed every FLUSH_EVERY
#               publishes (amqp_bench --flush-every)
#   latency     LAT_SIZE-byte bodies at LAT_RATE msg/s for LAT_SECONDS (+1 s
#               warm-up not counted), modes transient and confirm; p50/p99/p99.9
#               of consumer's CLOCK_MONOTONIC minus the stamp in the body
# and prints medians, ranges and Sluice/RabbitMQ ratios with the targets:
#   throughput >= 4x RabbitMQ in every row; p99 latency lower than RabbitMQ's;
# and how busy the client's publisher thread was in each row (its CPU time over
# its wall time: near 1, the client sets the rate, not the broker). The
# throughput target is judged on the corked client (there the broker, not the
# publisher thread, is what is measured); the plain rows are printed too.
# Everything it started is stopped by PID (RabbitMQ by rabbitmqctl stop, then
# its PID) and the temp dir removed at exit. No rep starts that would end past
# BUDGET_S (judged by the last throughput rep's duration); whole run about
# 6 min here.
#
# Environment: BUILD_DIR (default build-release), SLUICE_BIN (use this sluice,
# do not build), BENCH_DIR (parent of the temp dir, default $TMPDIR or /tmp),
# REPS (3), N_100 (200000), N_1K (100000), LAT_RATE (5000), LAT_SECONDS (5),
# LAT_SIZE (1024), PREFETCH (1000), ACK_EVERY (100), WINDOW (1000),
# FLUSH_EVERY (64), SETTLE_S (15: quiet seconds before the latency runs),
# BUDGET_S (420), PERF=1 (after the reps, perf-profile sluice during one more
# 100 B run per mode and print the top symbols).
# Needs: cmake, cc, librabbitmq-dev, rabbitmq-server, python3.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build-release}
BENCH_DIR=${BENCH_DIR:-${TMPDIR:-/tmp}}
REPS=${REPS:-3}
N_100=${N_100:-200000}
N_1K=${N_1K:-100000}
LAT_RATE=${LAT_RATE:-5000}
LAT_SECONDS=${LAT_SECONDS:-5}
LAT_SIZE=${LAT_SIZE:-1024}
PREFETCH=${PREFETCH:-1000}
ACK_EVERY=${ACK_EVERY:-100}
WINDOW=${WINDOW:-1000}
FLUSH_EVERY=${FLUSH_EVERY:-64}
SETTLE_S=${SETTLE_S:-15}
BUDGET_S=${BUDGET_S:-420} # no rep may end after this: the run stays under 8 minutes
RABBITMQ_LOCAL=${RABBITMQ_LOCAL:-/work/shared/tools/rabbitmq-local.sh}
MODE_MAX_S=60 # bound on one amqp_bench call
START=$(date +%s)
MODES=(transient persistent confirm)
CLIENTS=(corked plain)
LAT_MODES=(transient confirm)

for tool in python3 pkg-config cc; do
	command -v "$tool" >/dev/null || { echo "run-amqp.sh: $tool is not installed" >&2; exit 1; }
done
pkg-config --exists librabbitmq || { echo "run-amqp.sh: librabbitmq-dev is not installed" >&2; exit 1; }
HAVE_RABBIT=1
if [[ ! -x /usr/sbin/rabbitmq-server || ! -x $RABBITMQ_LOCAL ]]; then
	echo "run-amqp.sh: rabbitmq-server (or $RABBITMQ_LOCAL) missing: Sluice figures only" >&2
	HAVE_RABBIT=0
fi

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
	SLUICE=$BUILD_DIR/sluice
fi
mkdir -p "$BUILD_DIR"
BENCH=$BUILD_DIR/amqp_bench
SRC=$ROOT/bench/amqp/amqp_bench.c
if [[ ! -x $BENCH || $SRC -nt $BENCH ]]; then
	# shellcheck disable=SC2046 # pkg-config output is a list of flags
	cc -std=c11 -O2 -g -Wall -Wextra -Werror -o "$BENCH" "$SRC" \
		$(pkg-config --cflags --libs librabbitmq) -lpthread
fi
echo "amqp_bench: $BENCH (librabbitmq $(pkg-config --modversion librabbitmq))" >&2

# ---- processes we start, stopped by PID at exit ----
WORK=$(mktemp -d "$BENCH_DIR/sluice-bench-amqp.XXXXXX")
chmod 755 "$WORK" # RabbitMQ runs as user rabbitmq and must reach $WORK/rabbit
SLUICE_PID=""
RABBIT_STARTED=0
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
	[[ -n $SLUICE_PID ]] && stop_pid "$SLUICE_PID"
	if ((RABBIT_STARTED)); then
		timeout 30 "$RABBITMQ_LOCAL" stop "$WORK/rabbit" || true
		if [[ -f $WORK/rabbit/pid ]]; then stop_pid "$(cat "$WORK/rabbit/pid")"; fi
	fi
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
	echo "run-amqp.sh: $2 did not start listening on port $1" >&2
	exit 1
}

declare -A PORT
PORT[sluice]=$(free_port)
mkdir -p "$WORK/sluice"
"$SLUICE" --data-dir "$WORK/sluice/data" --port-kafka 0 --port-amqp "${PORT[sluice]}" --port-http 0 \
	>"$WORK/sluice.log" 2>&1 &
SLUICE_PID=$!
wait_port "${PORT[sluice]}" sluice
BROKERS=(sluice)
if ((HAVE_RABBIT)); then
	PORT[rabbit]=$(free_port)
	RABBIT_STARTED=1
	if timeout 90 "$RABBITMQ_LOCAL" start "$WORK/rabbit" "${PORT[rabbit]}"; then
		BROKERS+=(rabbit)
		RABBIT_VERSION=$(dpkg-query -W -f '${Version}' rabbitmq-server 2>/dev/null || echo '?')
	else
		echo "run-amqp.sh: RabbitMQ did not start: Sluice figures only" >&2
		HAVE_RABBIT=0
	fi
fi

echo "sluice amqp benchmark: $(date -u +%Y-%m-%dT%H:%MZ), $(uname -r), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "sluice $SLUICE :${PORT[sluice]}$( ((HAVE_RABBIT)) && echo ", rabbitmq ${RABBIT_VERSION:-} :${PORT[rabbit]}"); 100 B x $N_100, 1 KiB x $N_1K, $REPS reps, data in $WORK ($(df -PT "$WORK" | awk 'NR==2 { print $1 " " $2 }'))" >&2

declare -A R
add() { R[$1]="${R[$1]:-} $2"; }
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }

# Runs amqp_bench with a time bound; keeps its RESULT line; prints it.
run_bench() { # broker args...
	local b=$1 line
	shift
	if ! line=$(timeout $((MODE_MAX_S + 15)) "$BENCH" "$@" --port "${PORT[$b]}" --prefetch "$PREFETCH" \
		--ack-every "$ACK_EVERY" --window "$WINDOW" --max-seconds "$MODE_MAX_S" | grep '^RESULT'); then
		echo "run-amqp.sh: amqp_bench $* against $b failed" >&2
		return 1
	fi
	echo "$b $line" >>"$WORK/results"
	echo "$line"
}

broker_tp() { # broker
	local b=$1 size n mode line cl fe
	for cl in "${CLIENTS[@]}"; do
		fe=0
		[[ $cl == corked ]] && fe=$FLUSH_EVERY
		for size in 100 1024; do
			n=$N_1K
			((size == 100)) && n=$N_100
			for mode in "${MODES[@]}"; do
				line=$(run_bench "$b" throughput --mode "$mode" --size "$size" --count "$n" \
					--flush-every "$fe") || continue
				add "$b.tp.$cl.$mode.$size" "$(field "$line" msgps)"
				# How busy the client's publisher thread was: near 1, the
				# client and not the broker sets the rate.
				add "$b.busy.$cl.$mode.$size" "$(awk -v c="$(field "$line" pub_cpu_secs)" \
					-v s="$(field "$line" pub_secs)" 'BEGIN { if (s + 0 > 0) printf "%.2f", c / s }')"
			done
		done
	done
}

broker_lat() { # broker
	local b=$1 mode line
	for mode in "${LAT_MODES[@]}"; do
		line=$(run_bench "$b" latency --mode "$mode" --size "$LAT_SIZE" --rate "$LAT_RATE" \
			--seconds "$LAT_SECONDS") || continue
		add "$b.p50.$mode" "$(field "$line" p50_ms)"
		add "$b.p99.$mode" "$(field "$line" p99_ms)"
		add "$b.p999.$mode" "$(field "$line" p999_ms)"
	done
}

# Latency first, after a quiet pause: on this VM the tail latency of both
# brokers is several times worse for some 20 s after a burst of throughput runs
# (or RabbitMQ's start), whatever runs.
sleep "$SETTLE_S"
for ((rep = 0; rep < REPS; rep++)); do
	echo "latency rep $((rep + 1))/$REPS ..." >&2
	for ((k = 0; k < ${#BROKERS[@]}; k++)); do
		broker_lat "${BROKERS[$(((k + rep) % ${#BROKERS[@]}))]}"
	done
done

last_rep_s=0
for ((rep = 0; rep < REPS; rep++)); do
	rep_start=$(date +%s)
	if ((rep_start - START + last_rep_s > BUDGET_S)); then
		echo "time budget reached: $rep reps instead of $REPS" >&2
		break
	fi
	echo "throughput rep $((rep + 1))/$REPS ..." >&2
	for ((k = 0; k < ${#BROKERS[@]}; k++)); do
		broker_tp "${BROKERS[$(((k + rep) % ${#BROKERS[@]}))]}"
	done
	last_rep_s=$(($(date +%s) - rep_start))
done

median() { tr ' ' '\n' <<<"$1" | { grep . || true; } | sort -g | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; else print "n/a" }'; }
range() { tr ' ' '\n' <<<"$1" | { grep . || true; } | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { print lo "-" hi }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2fx", a / b; else print "n/a" }'; }
verdict_ge() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { if (!(a + 0 > 0 && b + 0 > 0)) print "n/a"; else print (a / b >= t) ? "met" : "MISSED" }'; }
verdict_lt() { awk -v a="$1" -v b="$2" 'BEGIN { if (!(a + 0 > 0 && b + 0 > 0)) print "n/a"; else print (a < b) ? "met" : "MISSED" }'; }

echo
for cl in "${CLIENTS[@]}"; do
	if [[ $cl == corked ]]; then
		printf '%-34s %22s %22s %8s  %s\n' "throughput, msg/s (median, range)" "sluice" "rabbitmq" "ratio" "target >= 4x"
		echo "corked publisher (flushed every $FLUSH_EVERY publishes):"
	else
		echo "plain publisher (one segment per publish; not judged, the client's limit):"
	fi
	for size in 100 1024; do
		for mode in "${MODES[@]}"; do
			k=$cl.$mode.$size
			s=$(median "${R[sluice.tp.$k]:-}")
			r=$(median "${R[rabbit.tp.$k]:-}")
			v=$(verdict_ge "$s" "$r" 4)
			[[ $cl == plain ]] && v="(${v,,})"
			printf '%-34s %22s %22s %8s  %s\n' "  $mode $size B" "$s ($(range "${R[sluice.tp.$k]:-}"))" \
				"$r ($(range "${R[rabbit.tp.$k]:-}"))" "$(ratio "$s" "$r")" "$v"
		done
	done
done
echo
printf '%-34s %22s %22s\n' "publisher thread busy (CPU / wall)" "sluice" "rabbitmq"
for cl in "${CLIENTS[@]}"; do
	for size in 100 1024; do
		for mode in "${MODES[@]}"; do
			printf '%-34s %22s %22s\n' "$cl $mode $size B" "$(median "${R[sluice.busy.$cl.$mode.$size]:-}")" \
				"$(median "${R[rabbit.busy.$cl.$mode.$size]:-}")"
		done
	done
done
echo
printf '%-34s %22s %22s %8s  %s\n' "latency ms, $LAT_SIZE B at $LAT_RATE msg/s" "sluice" "rabbitmq" "ratio" "target p99 lower"
for mode in "${LAT_MODES[@]}"; do
	for p in p50 p99 p999; do
		s=$(median "${R[sluice.$p.$mode]:-}")
		r=$(median "${R[rabbit.$p.$mode]:-}")
		v=""
		[[ $p == p99 ]] && v=$(verdict_lt "$s" "$r")
		printf '%-34s %22s %22s %8s  %s\n' "$mode $p" "$s ($(range "${R[sluice.$p.$mode]:-}"))" \
			"$r ($(range "${R[rabbit.$p.$mode]:-}"))" "$(ratio "$s" "$r")" "$v"
	done
done
echo
echo "amqp_bench RESULT lines:"
cat "$WORK/results"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); total time: $(($(date +%s) - START)) s"
if grep -qE 'ERROR|WARN' "$WORK/sluice.log"; then
	echo "sluice logged:"
	{ grep -E 'ERROR|WARN' "$WORK/sluice.log" | head -5; } || true
fi

# PERF=1: where sluice spends its time during one more 100 B run per mode.
if [[ -n ${PERF:-} ]]; then
	if ! command -v perf >/dev/null; then
		echo "PERF=1: perf is not installed" >&2
		exit 0
	fi
	for mode in "${MODES[@]}"; do
		perf record -F 2999 -g -o "$WORK/perf-$mode.data" -p "$SLUICE_PID" >/dev/null 2>&1 &
		ppid=$!
		sleep 0.5
		run_bench sluice throughput --mode "$mode" --size 100 --count "$N_100" || true
		kill -INT "$ppid" 2>/dev/null || true
		wait "$ppid" 2>/dev/null || true
		echo
		echo "perf: sluice during a 100 B $mode run, top symbols (self):"
		{ perf report -i "$WORK/perf-$mode.data" --no-children --sort sym --stdio -g none 2>/dev/null |
			grep -v '^#' | grep . | head -30; } || true
	done
fi
