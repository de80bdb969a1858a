#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ for a bounded time each (libFuzzer), the step
# scripts/test.sh runs in CI; longer runs use the same script with more seconds.
#
#   scripts/fuzz.sh                    # every target, 10 s each
#   scripts/fuzz.sh 600 pgsql_check_reply mysql_check_reply
#
# cargo-fuzz is installed from crates.io when missing. RUSTC_BOOTSTRAP=1 lets the stable
# toolchain take the sanitizer flags cargo-fuzz passes (no nightly needed). Each target keeps
# its corpus in fuzz/corpus/TARGET (not committed); a crash leaves its input in
# fuzz/artifacts/TARGET and fails the run. The last line per target is libFuzzer's count.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${1:-10}"
[ $# -gt 0 ] && shift
case "$seconds" in
    ''|*[!0-9]*) echo "fuzz.sh: seconds must be a number, got '$seconds'" >&2; exit 2 ;;
esac

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz (crates.io)"
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1

targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi

# One optimized build for all targets (debug assertions stay on: overflow checks count).
cargo fuzz build -O

failed=()
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    log="$(mktemp)"
    rc=0
    cargo fuzz run -O "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1 || rc=$?
    runs="$(grep -oE 'Done [0-9]+ runs in [0-9]+ second' "$log" | tail -1 || true)"
    if [ "$rc" -ne 0 ]; then
        tail -n 40 "$log"
        echo "fuzz.sh: $target FAILED (exit $rc); see fuzz/artifacts/$target"
        failed+=("$target")
    else
        echo "fuzz.sh: $target ok: ${runs:-no count} (corpus $(ls "corpus/$target" | wc -l) inputs)"
    fi
    rm -f "$log"
done

if [ "${#failed[@]}" -ne 0 ]; then
    echo "fuzz.sh: failures: ${failed[*]}" >&2
    exit 1
fi
