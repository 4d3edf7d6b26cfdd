#!/bin/sh
# tests/run.sh CMD...: runs each test command, echoes its PASS/FAIL lines, and closes with the
# total "N passed, N failed". A command that crashes or exits non-zero without reporting a failure
# counts as one failure, so a crash can never pass silently.
pass=0
fail=0
log=$(mktemp)
for cmd in "$@"; do
    # the program's name: the first word that is not a VAR=value setting
    name=$(basename "$(printf '%s\n' $cmd | grep -v '=' | head -n 1)")
    start=$(date +%s)
    # a hung test must fail, not stall CI: every command gets a time limit
    timeout "${TEST_TIMEOUT:-900}" sh -c "$cmd" >"$log" 2>&1
    rc=$?
    grep -E '^(PASS|FAIL) |^#' "$log" | grep -v '^# .* passed, .* failed$'
    p=$(grep -c '^PASS ' "$log")
    f=$(grep -c '^FAIL [^:]*$' "$log")
    if [ "$rc" -eq 0 ] && [ "$p" -eq 0 ] && [ "$f" -eq 0 ]; then
        echo "PASS $name"   # a plain command (e.g. a corpus replay) passes by its exit status
        p=1
    elif [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "FAIL $name: exited with status $rc; last output:"
        tail -n 15 "$log" | sed 's/^/    /'
        f=1
    fi
    echo "# $name: $p passed, $f failed ($(( $(date +%s) - start )) s)"
    pass=$((pass + p))
    fail=$((fail + f))
done
rm -f "$log"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
