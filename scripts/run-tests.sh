#!/usr/bin/env bash
# Runs the meson test suite of each build directory given (default: build) and ends with the line
# CI reads: "N passed, M failed", summed over every directory. Timeouts and unexpected passes count
# as failures; skipped tests are reported separately.
set -uo pipefail
builds=("$@")
[[ ${#builds[@]} -eq 0 ]] && builds=(build)

status=0
logs=()
for build in "${builds[@]}"; do
  echo "run-tests: meson test -C $build"
  meson test -C "$build" --print-errorlogs || status=1
  logs+=("$build/meson-logs/testlog.json")
done

summary=$(python3 - "${logs[@]}" <<'PY'
import json, sys
passed = failed = skipped = skipped_cases = 0
for path in sys.argv[1:]:
    with open(path) as log:
        for line in log:
            test = json.loads(line)
            result = test["result"]
            if result in ("OK", "EXPECTEDFAIL"):
                passed += 1
                # Test cases a passing run skipped at its rank count (tests/skip.hpp).
                skipped_cases += sum(l.startswith("SKIP: ") for l in (test.get("stdout") or "").splitlines())
            elif result == "SKIP":
                skipped += 1
            else:
                failed += 1
if skipped or skipped_cases:
    print(f"({skipped} skipped; {skipped_cases} test cases skipped inside passing runs: "
          f"grep '^SKIP:' <build>/meson-logs/testlog.txt)")
print(f"{passed} passed, {failed} failed")
PY
) || { echo "0 passed, 1 failed"; exit 1; }

echo "$summary"
failed=$(echo "$summary" | tail -n 1 | sed -E 's/.* ([0-9]+) failed$/\1/')
[[ $status -eq 0 && $failed -eq 0 ]]
