#!/usr/bin/env bash
# A bounded fuzzing run for CI: each target for FUZZ_SECONDS (default 60) from its committed seeds,
# with AddressSanitizer. Fails on any crash, timeout or out-of-memory. cargo-fuzz is installed
# once beside the target directory (keyed on its version); the instrumented build goes to its own
# directory there, apart from the normal builds, and is reused by later runs.
#
#   bash fuzz/ci.sh            (from anywhere; CARGO_TARGET_DIR as for the main build)
set -euo pipefail
cd "$(dirname "$0")"
: "${CARGO_TARGET_DIR:=/var/cache/voxmail-target}"
SECONDS_PER_TARGET="${FUZZ_SECONDS:-60}"
VERSION=0.13.2
ROOT="$CARGO_TARGET_DIR/voxmail-cargo-fuzz-$VERSION"
if [ ! -x "$ROOT/bin/cargo-fuzz" ]; then
  cargo install cargo-fuzz --version "$VERSION" --locked --root "$ROOT" --quiet
fi
export PATH="$ROOT/bin:$PATH"
# cargo-fuzz passes nightly-only flags (-Zsanitizer, sanitizer coverage); the stable toolchain takes
# them with RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="$CARGO_TARGET_DIR/fuzz"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for target in decode deposit; do
  extra=()
  asan=${ASAN_OPTIONS:-}
  case $target in
    decode) seeds=../fixtures/fuzz-seeds ;;
    # A running server keeps state past one input on purpose (its runtime, pools, caches):
    # LeakSanitizer would report it as leaked, per input and again at exit.
    deposit) seeds=../fixtures/fuzz-seeds-deposit extra=(-detect_leaks=0) asan=detect_leaks=0 ;;
  esac
  mkdir -p "$work/$target"
  echo "== fuzz $target for ${SECONDS_PER_TARGET}s"
  # The working corpus first: libFuzzer writes what it finds there, never into the seeds.
  if ! ASAN_OPTIONS="$asan" cargo fuzz run "$target" "$work/$target" "$seeds" -- \
    -max_total_time="$SECONDS_PER_TARGET" -max_len=16384 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 "${extra[@]}" >"$work/$target.log" 2>&1; then
    tail -n 60 "$work/$target.log"
    echo "fuzz $target: FAILED (the crashing input is in fuzz/artifacts/$target/)"
    exit 1
  fi
  grep -E '^(INFO: seed corpus|#[0-9]+ *DONE|stat::number_of_executed_units|stat::peak_rss_mb|Done [0-9]+ runs)' \
    "$work/$target.log" || true
done
