#!/usr/bin/env bash
# The one test command (README, CI via .ci/run):
#
#   scripts/test.sh           # deps (apt) + cargo fmt --check + clippy -D warnings + all tests
#   scripts/test.sh --quick   # deps + tests only (no fmt, no clippy)
#   scripts/test.sh --no-deps # skip the apt step (anything else is as above)
#   scripts/test.sh --no-fuzz # skip the bounded fuzzing step (FUZZ_SECONDS per target, 10)
#
# Every step runs even if an earlier one failed (except the dependency step), so one run shows
# all problems; the exit code is the first failing step's. Tests run with cargo-nextest when it
# is available (it is on the project's machines), else with `cargo test`.
# Extra arguments after `--` go to the test runner, e.g. `scripts/test.sh --quick -- pg_`.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
deps=1
fuzz=1
runner_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1 ;;
        --no-deps) deps=0 ;;
        --no-fuzz) fuzz=0 ;;
        --) shift; runner_args=("$@"); break ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "test.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

start_time=$SECONDS
banner() {
    printf '\n==================== %s ====================  (t+%ds)\n' "$*" "$((SECONDS - start_time))"
}

export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"

# cargo from rustup's default location when PATH lacks it (non-login shells, sudo).
if ! command -v cargo >/dev/null 2>&1 && [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]; then
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi

if [ "$deps" -eq 1 ]; then
    banner "system dependencies (scripts/ensure-deps.sh)"
    bash scripts/ensure-deps.sh
fi

banner "toolchain"
if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: install Rust (https://rustup.rs), e.g." >&2
    echo "  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt,clippy" >&2
    exit 1
fi
cargo --version
if [ "$quick" -eq 0 ] && command -v rustup >/dev/null 2>&1; then
    for component in rustfmt clippy; do
        if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
            echo "adding rustup component $component"
            rustup component add "$component"
        fi
    done
fi

use_nextest=0
if cargo nextest --version >/dev/null 2>&1; then
    use_nextest=1
fi
if [ "$use_nextest" -eq 1 ]; then
    cargo nextest --version | head -1
else
    echo "test runner: cargo test"
fi

failed=()
first_rc=0
last_rc=0
step() {
    local name="$1"
    shift
    banner "$name"
    echo "+ $*"
    local rc=0
    "$@" || rc=$?
    last_rc=$rc
    if [ "$rc" -ne 0 ]; then
        echo "!!!! $name failed (exit $rc)" >&2
        failed+=("$name")
        [ "$first_rc" -ne 0 ] || first_rc=$rc
    fi
}

if [ "$quick" -eq 0 ]; then
    step "format (cargo fmt --check)" cargo fmt --all -- --check
    step "lint (cargo clippy -D warnings)" cargo clippy --workspace --all-targets -- -D warnings
fi

# Every cargo-fuzz target for a bounded time (scripts/fuzz.sh installs cargo-fuzz when
# missing): a crash fails the run like a failed test. Before the tests, so the test runner's
# summary stays the last thing printed.
if [ "$quick" -eq 0 ] && [ "$fuzz" -eq 1 ]; then
    step "fuzz (scripts/fuzz.sh, ${FUZZ_SECONDS:-10} s per target)" \
        bash scripts/fuzz.sh "${FUZZ_SECONDS:-10}"
fi

if [ "$use_nextest" -eq 1 ]; then
    # nextest does not run doctests: run them first, so the test runner's summary stays the
    # last thing printed.
    if [ "${#runner_args[@]}" -eq 0 ]; then
        step "doctests (cargo test --doc)" cargo test --workspace --doc --no-fail-fast
    fi
    step "tests (cargo nextest)" cargo nextest run --workspace --no-fail-fast \
        ${runner_args[@]+"${runner_args[@]}"}
else
    step "tests (cargo test)" cargo test --workspace --no-fail-fast \
        ${runner_args[@]+-- "${runner_args[@]}"}
fi

banner "summary"
if [ "${#failed[@]}" -ne 0 ]; then
    printf 'FAILED: %s\n' "${failed[@]}"
    exit "$first_rc"
fi
echo "all steps passed in $((SECONDS - start_time))s"
