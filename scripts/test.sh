#!/usr/bin/env bash
# Sets everything up and runs every test:
#   1. C unit tests (CTest) on the normal build,
#   2. integration tests (pytest, real clients) against the normal build,
#   3. unit + integration tests again under AddressSanitizer + UBSan,
#   4. the fuzz targets (tests/fuzz) for a fixed set of inputs (scripts/fuzz.sh --ci),
#   5. the threaded unit tests under ThreadSanitizer.
# Ends with one summary line "N passed, N failed" over every test run.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
scripts/setup.sh || exit 1

results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT
status=0
stage() { echo; echo "=== $* ==="; }

run_ctest() { # dir name [ctest args...]
  local dir=$1 name=$2; shift 2
  (cd "$dir" && ctest --output-on-failure --timeout 600 --output-junit "$results/ctest-$name.xml" "$@") || status=1
}
run_pytest() { # bin name
  SLUICE_BIN="$1" /usr/bin/python3 -m pytest -q -p no:cacheprovider \
    --junitxml="$results/pytest-$2.xml" tests/integration || status=1
}

stage "build (RelWithDebInfo)"
scripts/build.sh build || exit 1
stage "unit tests"
run_ctest build unit
stage "integration tests"
run_pytest "$root/build/sluice" integration

stage "build (ASan + UBSan)"
scripts/build.sh build-asan -DSLUICE_SANITIZE=ON || exit 1
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
stage "unit tests (ASan + UBSan)"
run_ctest build-asan unit-asan
stage "integration tests (ASan + UBSan)"
run_pytest "$root/build-asan/sluice" integration-asan
unset ASAN_OPTIONS UBSAN_OPTIONS

stage "fuzz targets (libFuzzer, ASan + UBSan, fixed seed)"
scripts/fuzz.sh --ci "$results" || status=1

stage "build (TSan)"
CC=clang scripts/build.sh build-tsan -DSLUICE_TSAN=ON || exit 1
stage "threaded unit tests (TSan)"
TSAN_OPTIONS=halt_on_error=1 run_ctest build-tsan unit-tsan -R 'test_(loop|conn|flusher|broker_queue|group)'

/usr/bin/python3 - "$results" <<'PY'
import glob, sys, xml.etree.ElementTree as ET
passed = failed = skipped = 0
for f in sorted(glob.glob(sys.argv[1] + "/*.xml")):
    root = ET.parse(f).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    for s in suites:
        for case in s.iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                failed += 1
            elif case.find("skipped") is not None:
                skipped += 1
            else:
                passed += 1
print()
print(f"{passed} passed, {failed} failed, {skipped} skipped")
PY
[ $status -eq 0 ] || echo "test.sh: some stage failed"
exit $status
