#!/usr/bin/env bash
# Real-app end-to-end tests: builds the UI and the app (UI embedded), starts a virtual
# display and tauri-driver (which drives WebKitWebDriver, which starts the app), and runs
# the node:test files here. Every run gets its own empty data folder (XDG_DATA_HOME).
#
# Needs: Xvfb, webkit2gtk-driver (WebKitWebDriver), tauri-driver 2.x
# (`cargo install tauri-driver --locked`), Node 20+.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"

[ -d ui/node_modules ] || npm --prefix ui ci
[ -d tests/e2e/node_modules ] || npm --prefix tests/e2e ci
npm --prefix ui run build
cargo build -p impchat-app --features tauri/custom-protocol

export TAURI_APP="$root/target/debug/impchat-app"
export XDG_DATA_HOME="$(mktemp -d)"
export E2E_PORT="${E2E_PORT:-4444}"
driver="${TAURI_DRIVER:-$(command -v tauri-driver || echo "$HOME/.cargo/bin/tauri-driver")}"

# Xvfb picks a free display itself and writes its number to fd 3.
display_file="$(mktemp)"
Xvfb -displayfd 3 -screen 0 1280x800x24 -nolisten tcp 3>"$display_file" 2>/dev/null &
xvfb=$!
driver_pid=""
cleanup() {
  [ -n "$driver_pid" ] && kill "$driver_pid" 2>/dev/null
  kill "$xvfb" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$XDG_DATA_HOME" "$display_file"
}
trap cleanup EXIT
for _ in $(seq 100); do [ -s "$display_file" ] && break; sleep 0.1; done
export DISPLAY=":$(head -n1 "$display_file")"

# The display must exist before tauri-driver starts: it launches the app.
"$driver" --port "$E2E_PORT" --native-port "$((E2E_PORT + 1))" >/dev/null 2>&1 &
driver_pid=$!
for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$E2E_PORT") 2>/dev/null && break; sleep 0.1; done

node --test --test-concurrency=1 tests/e2e/*.test.mjs
