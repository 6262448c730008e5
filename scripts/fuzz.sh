#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/fuzz_*.c) into build-fuzz with clang,
# ASan and UBSan, and runs each one from its seeds (tests/fuzz/seeds/<name>).
#
#   scripts/fuzz.sh              each target for 60 s, a random seed, new inputs
#                                kept in build-fuzz/corpus/<name>
#   scripts/fuzz.sh SECONDS      the same for SECONDS each
#   scripts/fuzz.sh --ci DIR     a fixed seed and a fixed number of runs (the same
#                                inputs every time), a JUnit file per target in DIR;
#                                used by scripts/test.sh
# A crash, leak, sanitizer report or failed round trip stops the target, leaves
# the input as build-fuzz/crash-* and makes the script exit 1.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
ci_dir=""
seconds=60
if [[ ${1:-} == --ci ]]; then
	ci_dir=${2:?--ci needs a directory}
elif [[ -n ${1:-} ]]; then
	seconds=$1
fi
targets=(fuzz_amqp fuzz_kafka fuzz_queue_recovery)
# --ci: inputs per target, about 15 s each here (queue recovery writes files per input).
declare -A ci_runs=([fuzz_amqp]=1000000 [fuzz_kafka]=1000000 [fuzz_queue_recovery]=30000)
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLUICE_FUZZ=ON >/dev/null || exit 1
cmake --build build-fuzz -j"$(nproc)" --target "${targets[@]}" >/dev/null || exit 1

status=0
for t in "${targets[@]}"; do
	seeds=$root/tests/fuzz/seeds/${t#fuzz_}
	corpus=$root/build-fuzz/corpus/${t#fuzz_}
	log=$root/build-fuzz/$t.log
	start=$(date +%s%N)
	if [[ -n $ci_dir ]]; then
		# A fixed seed from the committed seeds: the same inputs every run. New
		# inputs go to a scratch directory (libFuzzer writes to the first one).
		rm -rf "$corpus.ci"
		mkdir -p "$corpus.ci"
		args=(-seed=1 -runs="${ci_runs[$t]}" "$corpus.ci" "$seeds")
	else
		mkdir -p "$corpus"
		args=(-max_total_time="$seconds" "$corpus" "$seeds")
	fi
	(cd build-fuzz && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		./"$t" -max_len=8192 -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$root/build-fuzz/" \
		-print_final_stats=1 "${args[@]}") >"$log" 2>&1
	rc=$?
	ms=$((($(date +%s%N) - start) / 1000000))
	took=$((ms / 1000)).$(printf %03d $((ms % 1000)))
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
	if ((rc == 0)); then
		echo "$t: ok, ${runs:-?} inputs in ${took%.*} s"
	else
		status=1
		echo "$t: FAILED (exit $rc); last lines of $log:"
		tail -n 30 "$log"
	fi
	if [[ -n $ci_dir ]]; then
		mkdir -p "$ci_dir"
		{
			echo "<testsuite name=\"fuzz\" tests=\"1\">"
			echo "<testcase classname=\"fuzz\" name=\"$t\" time=\"$took\">"
			((rc == 0)) || echo "<failure message=\"exit $rc, see $log\"/>"
			echo "</testcase></testsuite>"
		} >"$ci_dir/fuzz-$t.xml"
	fi
done
exit $status
