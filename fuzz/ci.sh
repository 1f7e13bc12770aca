#!/usr/bin/env bash
# Builds every fuzz target and runs each for a short fixed time from the seed corpus.
#
#   bash fuzz/ci.sh                   # 20 s per target
#   FUZZ_SECONDS=60 bash fuzz/ci.sh   # longer
#   FUZZ_TARGETS="core_ops config" bash fuzz/ci.sh
#
# Installs the nightly toolchain and cargo-fuzz when missing, and fails loudly when it cannot.
# Exits non-zero if any target fails to build or finds a crash; crash inputs are kept in
# fuzz/artifacts/<target>/ (reproduce: cargo +nightly fuzz run <target> <file>).
# The seed corpora are read, never written: new inputs go to a temporary directory.
set -euo pipefail
cd "$(dirname "$0")"

SECONDS_PER_TARGET="${FUZZ_SECONDS:-20}"

die() {
    echo "fuzz/ci.sh: FAILED: $*" >&2
    exit 1
}

command -v cargo >/dev/null || die "cargo is not installed"
command -v rustup >/dev/null || die "rustup is not installed (needed for the nightly toolchain)"

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "== installing the nightly toolchain"
    rustup toolchain install nightly --profile minimal ||
        die "cannot install the nightly toolchain (cargo fuzz needs -Zsanitizer)"
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked || die "cannot install cargo-fuzz (is crates.io reachable?)"
    cargo +nightly fuzz --version >/dev/null 2>&1 || die "cargo-fuzz installed but does not run"
fi
echo "== $(cargo +nightly fuzz --version), $(rustup run nightly rustc --version)"

echo "== cargo +nightly fuzz build"
cargo +nightly fuzz build || die "the fuzz targets do not build"

targets="${FUZZ_TARGETS:-$(cargo +nightly fuzz list)}"
[ -n "$targets" ] || die "no fuzz targets found"

work="$(mktemp -d "${TMPDIR:-/tmp}/zabd-fuzz-ci.XXXXXX")"
trap 'rm -rf "$work"' EXIT
failed=()
for target in $targets; do
    dict=dict/jute.dict
    [ "$target" = config ] && dict=dict/zoo_cfg.dict
    [ -d "corpus/$target" ] || die "no seed corpus for $target (fuzz/corpus/$target)"
    mkdir -p "$work/$target" "artifacts/$target"
    echo "== $target: ${SECONDS_PER_TARGET} s"
    if nice -n 19 cargo +nightly fuzz run "$target" "$work/$target" "corpus/$target" -- \
        -dict="$dict" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$PWD/artifacts/$target/" \
        >"$work/$target.log" 2>&1; then
        grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added)|DONE' \
            "$work/$target.log" | sed "s/^/   $target: /" || true
    else
        echo "fuzz/ci.sh: $target FAILED:" >&2
        grep -m 3 -A 2 -E "panicked at|ERROR: (AddressSanitizer|libFuzzer)" "$work/$target.log" >&2 || true
        echo "fuzz/ci.sh: the end of its log:" >&2
        tail -n 25 "$work/$target.log" >&2
        failed+=("$target")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    die "crashes or errors in: ${failed[*]} (inputs in fuzz/artifacts/<target>/)"
fi
echo "== fuzz/ci.sh: every target ran ${SECONDS_PER_TARGET} s without a crash"
