#!/bin/sh
# Runs every test program in $BUILD/tests. `run.sh fast` skips the heavy ones (a test is heavy
# when its source holds the line "// KED-TEST: heavy"; heavy tests take more than a minute and
# run only in the normal build). Ends with "N passed, N failed".
BUILD=${BUILD:-build}
mode=${1:-all}
# passive OpenMP waiting: spinning threads slow small parallel regions badly on shared cores
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
pass=0; fail=0; failed=""
for src in tests/test_*.c; do
    name=$(basename "$src" .c)
    if [ "$mode" = fast ] && grep -q '^// KED-TEST: heavy' "$src"; then continue; fi
    start=$(date +%s)
    if "$BUILD/tests/$name" > "$BUILD/tests/$name.log" 2>&1; then
        pass=$((pass + 1)); echo "ok   $name ($(( $(date +%s) - start ))s)"
    else
        fail=$((fail + 1)); failed="$failed $name"
        echo "FAIL $name ($(( $(date +%s) - start ))s)"; tail -n 30 "$BUILD/tests/$name.log" | sed 's/^/    /'
    fi
done
[ -n "$failed" ] && echo "failed:$failed"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
