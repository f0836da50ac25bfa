#!/usr/bin/env bash
# Runs the whole meson test suite and ends with the line CI reads: "N passed, M failed".
# Timeouts and unexpected passes count as failures; skipped tests are reported separately.
set -uo pipefail
build=${1:-build}

meson test -C "$build" --print-errorlogs
status=$?

summary=$(python3 - "$build/meson-logs/testlog.json" <<'PY'
import json, sys
passed = failed = skipped = 0
with open(sys.argv[1]) as log:
    for line in log:
        result = json.loads(line)["result"]
        if result in ("OK", "EXPECTEDFAIL"):
            passed += 1
        elif result == "SKIP":
            skipped += 1
        else:
            failed += 1
if skipped:
    print(f"({skipped} skipped)")
print(f"{passed} passed, {failed} failed")
PY
) || { echo "0 passed, 1 failed"; exit 1; }

echo "$summary"
failed=$(echo "$summary" | tail -n 1 | sed -E 's/.* ([0-9]+) failed$/\1/')
[[ $status -eq 0 && $failed -eq 0 ]]
