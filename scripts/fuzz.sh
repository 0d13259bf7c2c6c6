#!/usr/bin/env bash
# Runs every cargo fuzz target (fuzz/) for a bounded time each, starting from the committed
# corpus in fuzz/corpus/<target>. Fails when a target panics, hangs (over 10 s on one input),
# runs out of memory or trips AddressSanitizer; the input that did it is kept under
# $FUZZ_ARTIFACTS (default target/fuzz-artifacts) and printed. New corpus entries go to a
# temporary folder, so the checkout is left as it was.
#
#   bash scripts/fuzz.sh [TARGET...]     (default: every target)
#   FUZZ_SECONDS=300 bash scripts/fuzz.sh parse_pdf
#
# Needs the nightly toolchain (installed with rustup when missing) and cargo-fuzz (built once
# from crates.io into ~/.cache/ragplane-testbin).
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_FUZZ_VERSION=0.13.2
SECONDS_EACH=${FUZZ_SECONDS:-30}
TESTBIN=${RAGPLANE_TESTBIN:-$HOME/.cache/ragplane-testbin}
FUZZ_BIN=$TESTBIN/cargo-fuzz-$CARGO_FUZZ_VERSION
TARGET_DIR=${RAGPLANE_FUZZ_TARGET_DIR:-$HOME/.cache/ragplane-ci/fuzz-target}
ARTIFACTS=${FUZZ_ARTIFACTS:-$PWD/target/fuzz-artifacts}

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  rustup toolchain install nightly --profile minimal
fi
if [ ! -x "$FUZZ_BIN/bin/cargo-fuzz" ]; then
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --root "$FUZZ_BIN"
fi
export PATH="$FUZZ_BIN/bin:$PATH"
fuzz() { cargo +nightly fuzz "$1" --fuzz-dir fuzz "${@:2}"; }

TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  mapfile -t TARGETS < <(fuzz list)
fi
fuzz build --target-dir "$TARGET_DIR"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$ARTIFACTS"
failed=0
printf '%-16s %12s %10s %s\n' target inputs corpus result
for t in "${TARGETS[@]}"; do
  mkdir -p "$WORK/$t" "$WORK/artifacts-$t"
  log="$WORK/$t.log"
  if fuzz run --target-dir "$TARGET_DIR" "$t" "$WORK/$t" "fuzz/corpus/$t" -- \
    -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$WORK/artifacts-$t/" -print_final_stats=1 >"$log" 2>&1; then
    result=ok
  else
    result=FAILED
    failed=1
  fi
  runs=$(grep -oP 'stat::number_of_executed_units:\s*\K[0-9]+' "$log" | tail -n 1 || true)
  corpus=$(find "$WORK/$t" "fuzz/corpus/$t" -type f | wc -l)
  printf '%-16s %12s %10s %s\n' "$t" "${runs:-?}" "$corpus" "$result"
  if [ "$result" = FAILED ]; then
    cp "$WORK/artifacts-$t"/* "$ARTIFACTS/" 2>/dev/null || true
    echo "--- $t: the end of its log; the failing input is in $ARTIFACTS:"
    grep -v '^#[0-9]' "$log" | tail -n 40
    ls -l "$ARTIFACTS"
  fi
done
exit $failed
