#!/usr/bin/env bash
# Installs what is missing, then runs every check and test suite ImpChat has.
# Each suite prints its own summary; the script fails if any suite failed.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD

./scripts/setup.sh --test || { echo "setup failed: see the messages above" >&2; exit 1; }

failed=()
results=()
step() {
  local name=$1; shift
  printf '\n\033[1m==> %s\033[0m\n' "$name"
  local t0=$SECONDS
  if "$@"; then
    results+=("ok     $name ($((SECONDS - t0)) s)")
  else
    results+=("FAILED $name ($((SECONDS - t0)) s)")
    failed+=("$name")
  fi
}

step "rustfmt" cargo fmt --all -- --check
step "ui: build" npm --prefix ui run build
step "clippy" cargo clippy --workspace --all-targets --locked -- -D warnings
step "rust tests (nextest)" cargo nextest run --workspace --locked --no-fail-fast
# Ten seconds per target over the committed corpus; the long runs are in tests/fuzz/README.md.
step "fuzz: smoke run of each target (libFuzzer)" tests/fuzz/smoke.sh
step "ui: type check and lint" npm --prefix ui run check
step "ui: Playwright tests (Chromium)" npm --prefix ui test
# nextest above built target/debug/impchat (the CLI tests run it); a separate `cargo build -p`
# would resolve features per package and rebuild half the dependencies.
step "server: official openai client tests" tests/openai/run.sh
step "app: end-to-end tests (WebKit, tauri-driver)" tests/e2e/run.sh
# Phones: only the engine is pure Rust. The store (bundled SQLite) and the model manager (ring,
# under the HTTPS client) compile C, which needs the NDK's clang or Xcode: docs/mobile.md.
step "mobile: engine builds for aarch64-linux-android" \
  cargo check -p impchat-engine --target aarch64-linux-android --locked
step "mobile: engine builds for aarch64-apple-ios" \
  cargo check -p impchat-engine --target aarch64-apple-ios --locked

printf '\n\033[1m==> Summary\033[0m\n'
printf '%s\n' "${results[@]}"
cd "$root"
if [ ${#failed[@]} -gt 0 ]; then
  echo "Failed suites: ${failed[*]}" >&2
  exit 1
fi
