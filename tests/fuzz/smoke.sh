#!/usr/bin/env bash
# Builds every fuzz target on the stable toolchain (libFuzzer, no sanitizer) and runs each
# briefly over its committed seed corpus: a crash, panic or timeout fails the script.
# FUZZ_SECONDS per target (default 10; six targets make one minute). New inputs the short
# run finds go to a scratch folder, so the committed corpus stays as it is.
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds=${FUZZ_SECONDS:-10}
targets=(image_decode gguf safetensors template_splice archive_import server_request)
if [ $# -gt 0 ]; then targets=("$@"); fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is missing: install it with 'cargo install cargo-fuzz --locked'" >&2
  exit 1
fi
# The targets write their inputs to temporary files; RAM is faster than disk for that.
if [ -z "${TMPDIR:-}" ] && [ -w /dev/shm ]; then export TMPDIR=/dev/shm; fi

# cargo fuzz has no --locked: fail here if tests/fuzz/Cargo.lock is not up to date.
if ! cargo metadata --locked --format-version 1 --manifest-path tests/fuzz/Cargo.toml >/dev/null; then
  echo "tests/fuzz/Cargo.lock is out of date (a crate the targets use gained a dependency):" \
    "run 'cargo metadata --format-version 1 --manifest-path tests/fuzz/Cargo.toml >/dev/null'" \
    "and commit tests/fuzz/Cargo.lock" >&2
  exit 1
fi
build=(--fuzz-dir tests/fuzz --sanitizer none --codegen-units 16)
cargo fuzz build "${build[@]}"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failed=()
for target in "${targets[@]}"; do
  mkdir -p "$scratch/$target/corpus" "$scratch/$target/artifacts" "tests/fuzz/corpus/$target"
  printf '\n==> fuzz %s (%s s)\n' "$target" "$seconds"
  if ! cargo fuzz run "${build[@]}" "$target" "$scratch/$target/corpus" "tests/fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
    -artifact_prefix="$scratch/$target/artifacts/" 2>"$scratch/$target/log"; then
    tail -n 40 "$scratch/$target/log" >&2
    mkdir -p tests/fuzz/artifacts/"$target"
    cp "$scratch/$target/artifacts/"* tests/fuzz/artifacts/"$target"/ 2>/dev/null || true
    echo "fuzz $target failed; the input is in tests/fuzz/artifacts/$target/ (replay: cargo fuzz run ${build[*]} $target FILE)" >&2
    failed+=("$target")
  else
    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb)|^#[0-9]+ +DONE' "$scratch/$target/log" || true
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz targets that failed: ${failed[*]}" >&2
  exit 1
fi
