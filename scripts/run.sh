#!/usr/bin/env bash
# Installs what is missing, builds ImpChat and starts the desktop app.
# With no model installed it opens on the model set-up screen.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
npm --prefix ui run build
cargo build --release -p impchat-app --features tauri/custom-protocol --locked
exec target/release/impchat-app "$@"
