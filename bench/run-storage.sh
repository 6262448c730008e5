#!/usr/bin/env bash
# bench/run-storage.sh: storage append throughput per durability policy, as a
# ratio to the raw disk measured in the same run, in the same directory.
#
# Builds bench_storage (Release) if needed, then, REPS times and interleaved
# (so a disk whose speed drifts affects all columns alike):
#   raw        fio (else dd) sequential write of MB MiB, final fdatasync, in 1 MiB
#              blocks and in blocks of one encoded batch; the faster is the reference
#   os         bench_storage --case os        (same byte count, final fdatasync)
#   interval   bench_storage --case interval  (1000 ms)
#   8 no-wait  bench_storage --case batch8-nowait
#   fsync/write refs: fio (else dd oflag=dsync) writing blocks of one encoded
#              batch with fdatasync after every write, 1 job and 8 jobs
#   batch      bench_storage --case batch / batch8 / batch8-shared (SECONDS each;
#              batch8-shared: 8 appenders on one log, as producers to one partition)
# and prints medians and ratios. Everything runs in one temp dir (so on one
# disk), removed at exit. Whole run: about 2 minutes with the defaults.
#
# Environment: BUILD_DIR (default build-release), BENCH_BIN (use this binary,
# do not build), BENCH_DIR (parent of the temp
# dir, default $TMPDIR or /tmp), MB (default 1024), SECONDS_PER_CASE (default 3),
# FAST_REPS (reps of the bytes-bounded cases, default 5), REPS (of the timed
# ones, default 3), THREADS (default 8), RECORDS (1 KiB records per batch, default 16), NO_FIO=1 (use dd even if fio is installed).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build-release}
BENCH_DIR=${BENCH_DIR:-${TMPDIR:-/tmp}}
MB=${MB:-1024}
SECS=${SECONDS_PER_CASE:-3}
REPS=${REPS:-3}
FAST_REPS=${FAST_REPS:-5}
MAX_SECS=8     # cap on one bytes-bounded run (a slow disk)
BUDGET_S=165   # start no measurement after this: the run stays under 3 minutes
THREADS=${THREADS:-8}
RECORDS=${RECORDS:-16} # 1 KiB records per batch: 16 = 16 KiB batches, 64 = 64 KiB
START=$(date +%s)

if [[ -n ${BENCH_BIN:-} ]]; then
	BENCH=$BENCH_BIN
	echo "bench_storage: $BENCH (not rebuilt)" >&2
else
	# A new build dir is configured Release; an existing one keeps its build type.
	if [[ ! -f $BUILD_DIR/CMakeCache.txt ]]; then
		echo "configuring $BUILD_DIR (Release)" >&2
		cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
	fi
	if ! out=$(make -C "$BUILD_DIR" -j"$(nproc)" bench_storage 2>&1); then
		echo "$out" >&2
		echo "build failed" >&2
		exit 1
	fi
	type=$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$BUILD_DIR/CMakeCache.txt")
	echo "bench_storage: ${type:-default (RelWithDebInfo)} build in $BUILD_DIR" >&2
	BENCH=$BUILD_DIR/bench_storage
fi

WORK=$(mktemp -d "$BENCH_DIR/sluice-bench-storage.XXXXXX")
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

HAVE_FIO=0
[[ -z ${NO_FIO:-} ]] && command -v fio >/dev/null && HAVE_FIO=1
BATCH_BYTES=$("$BENCH" --batch-bytes --records "$RECORDS")

# Prints fio's write bandwidth in MB/s (10^6) from its JSON, summed over jobs.
fio_mbps() {
	python3 -c 'import json,sys
j=json.load(sys.stdin)
print("%.1f" % (sum(x["write"]["bw_bytes"] for x in j["jobs"]) / 1e6))'
}

# Prints dd's rate in MB/s from its last stderr line ("... copied, 1.2 s, 890 MB/s").
dd_mbps() {
	awk -v bytes="$1" '/copied/ { for (i = 1; i <= NF; i++) if ($i == "s,") print sprintf("%.1f", bytes / $(i-1) / 1e6) }'
}

settle() { sync; }
random_file() { [[ -f $WORK/random ]] || head -c $((64 * 1048576)) /dev/urandom >"$WORK/random"; }

# Sequential write of MB MiB in blocks of $1 bytes, then fdatasync. fio writes
# non-zero, scrambled buffers; dd needs a non-zero source too (this VM's disk
# writes zeros several times faster), so it copies a random file.
raw_seq() {
	local bs=$1 d=$WORK/raw
	mkdir -p "$d"
	settle
	if ((HAVE_FIO)); then
		fio --name=raw --directory="$d" --rw=write --bs="$bs" --size="${MB}M" --runtime="$MAX_SECS" \
			--ioengine=psync --end_fsync=1 --fallocate=none --output-format=json 2>/dev/null | fio_mbps
	else
		local count=$((MB * 1048576 / bs))
		random_file
		for ((i = 0; i < (MB + 63) / 64; i++)); do cat "$WORK/random"; done |
			dd of="$d/raw" bs="$bs" count="$count" iflag=fullblock conv=fdatasync 2>&1 | dd_mbps $((count * bs))
	fi
	rm -rf "$d"
}

# fdatasync after every write of one batch's size; $1 = jobs (each its own file).
raw_fsync_per_write() {
	local jobs=$1 d=$WORK/rawsync
	mkdir -p "$d"
	settle
	if ((HAVE_FIO)); then
		fio --name=rawsync --directory="$d" --rw=write --bs="$BATCH_BYTES" --size="${MB}M" \
			--numjobs="$jobs" --runtime="$SECS" --time_based=0 --ioengine=psync --fdatasync=1 \
			--fallocate=none --create_on_open=1 --group_reporting=0 --output-format=json 2>/dev/null | fio_mbps
	else
		local pids=() i out=$d/out
		random_file
		for ((i = 0; i < jobs; i++)); do
			timeout "$SECS" sh -c 'while :; do cat "$1"; done' sh "$WORK/random" |
				dd of="$d/f$i" bs="$BATCH_BYTES" iflag=fullblock oflag=dsync 2>"$out.$i" &
			pids+=($!)
		done
		wait "${pids[@]}" || true
		local total=0
		for ((i = 0; i < jobs; i++)); do
			total=$(awk -v t="$total" '/copied/ { for (i = 1; i <= NF; i++) if ($i == "s,") print t + $1 / $(i-1) / 1e6 }' "$out.$i")
		done
		printf '%.1f\n' "$total"
	fi
	rm -rf "$d"
}

# Runs one bench_storage case; prints its MB/s (and keeps its RESULT line in $WORK/results).
bench_case() {
	local d=$WORK/log
	mkdir -p "$d"
	settle
	local line
	line=$("$BENCH" --dir "$d" --case "$1" --mb "$MB" --max-seconds "$MAX_SECS" --seconds "$SECS" \
		--threads "$THREADS" --records "$RECORDS" | grep '^RESULT')
	echo "$line" >>"$WORK/results"
	rm -rf "$d"
	sed -n 's/.* mbps=\([0-9.]*\).*/\1/p' <<<"$line"
}

declare -A R
add() { R[$1]="${R[$1]:-} $2"; }

echo "sluice storage benchmark: $(date -u +%Y-%m-%dT%H:%MZ), $(uname -r), $(nproc) cores" >&2
echo "dir $WORK on $(df -PT "$WORK" | awk 'NR==2 { print $1 " (" $2 ")" }'), batch $BATCH_BYTES bytes, ${MB} MiB per bytes-bounded run x $FAST_REPS, ${SECS} s per timed run x $REPS, raw via $( ((HAVE_FIO)) && echo fio || echo dd)" >&2
# One measurement by key.
measure() {
	case $1 in
	raw) raw_seq 1048576 ;;
	raw16) raw_seq "$BATCH_BYTES" ;;
	os) bench_case os ;;
	interval) bench_case interval ;;
	nowait) bench_case batch8-nowait ;;
	sync1) raw_fsync_per_write 1 ;;
	batch) bench_case batch ;;
	syncN) raw_fsync_per_write "$THREADS" ;;
	batchN) bench_case batch8 ;;
	batchS) bench_case batch8-shared ;;
	esac
}

# The fast reps get 40% of the budget, so the timed cases always run.
budget_left() {
	local now=$(($(date +%s) - START)) limit=$BUDGET_S
	[[ $key == raw* || $key == os || $key == interval || $key == nowait ]] && limit=$((BUDGET_S * 2 / 5))
	if ((now + 2 * SECS > limit)); then
		echo "time budget reached: fewer reps than asked" >&2
		return 1
	fi
}

# The order rotates each rep: this disk is faster or slower depending on which
# blocks a file gets (see docs/benchmarks.md), so no case may always come first.
FAST=(raw raw16 os interval nowait)
TIMED=(sync1 batch syncN batchN batchS)
for ((rep = 0; rep < FAST_REPS; rep++)); do
	echo "bytes-bounded rep $((rep + 1))/$FAST_REPS ..." >&2
	for ((k = 0; k < ${#FAST[@]}; k++)); do
		key=${FAST[$(((k + rep) % ${#FAST[@]}))]}
		budget_left || break 2
		add "$key" "$(measure "$key")"
	done
done
for ((rep = 0; rep < REPS; rep++)); do
	echo "timed rep $((rep + 1))/$REPS ..." >&2
	for ((k = 0; k < ${#TIMED[@]}; k++)); do
		key=${TIMED[$(((k + rep) % ${#TIMED[@]}))]}
		budget_left || break 2
		add "$key" "$(measure "$key")"
	done
done

median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
range() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { print lo "-" hi }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", (b > 0 ? a / b : 0) }'; }
verdict() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { print (b > 0 && a / b >= t) ? "met" : "MISSED" }'; }

# The raw reference is the faster of the two block sizes (the conservative choice).
raw=$(awk -v a="$(median "${R[raw]:-}")" -v b="$(median "${R[raw16]:-}")" 'BEGIN { print (a > b) ? a : b }')
sync1=$(median "${R[sync1]:-}")
syncN=$(median "${R[syncN]:-}")
row() { # name key reference-value reference-name target
	local m
	m=$(median "${R[$2]:-}")
	local tgt=${5:-} v=""
	[[ -n $tgt ]] && v="$(verdict "$m" "$3" "$tgt") (>= ${tgt}x)"
	printf '%-44s %9s %15s  %6s vs %-26s %s\n' "$1" "$m" "($(range "${R[$2]:-}"))" "$(ratio "$m" "$3")" "$4" "$v"
}

echo
printf '%-44s %9s %15s  %s\n' "case (median)" "MB/s" "(min-max)" "ratio"
row "raw sequential write, 1 MiB blocks" raw "$raw" "raw sequential"
row "raw sequential write, ${BATCH_BYTES} B blocks" raw16 "$raw" "raw sequential"
row "raw fdatasync every ${BATCH_BYTES} B write, 1 job" sync1 "$raw" "raw sequential"
row "raw fdatasync every ${BATCH_BYTES} B write, $THREADS jobs" syncN "$raw" "raw sequential"
row "log.flush=os, 1 appender" os "$raw" "raw sequential" 0.9
row "log.flush=interval 1000 ms, 1 appender" interval "$raw" "raw sequential"
row "log.flush=batch, 1 appender (waits for ack)" batch "$raw" "raw sequential"
row "  same, vs its fsync-per-write reference" batch "$sync1" "fdatasync/write, 1 job"
row "log.flush=batch, $THREADS appenders (wait for ack)" batchN "$raw" "raw sequential" 0.5
row "  same, vs its fsync-per-write reference" batchN "$syncN" "fdatasync/write, $THREADS jobs"
row "log.flush=batch, $THREADS appenders on ONE log (wait)" batchS "$raw" "raw sequential" 0.5
row "log.flush=batch, $THREADS appenders, no wait" nowait "$raw" "raw sequential"
echo
echo "bench_storage RESULT lines:"
cat "$WORK/results"
echo "total time: $(($(date +%s) - START)) s"
