#!/usr/bin/env bash
# Installs what ImpChat needs to build, run and test, skipping what is already there.
# Usage: scripts/setup.sh [--test]    (--test adds the test-only tools)
# Only package registries are used: Debian apt, crates.io, npm, PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# --- Debian packages -------------------------------------------------------
apt_pkgs=(build-essential pkg-config curl file libwebkit2gtk-4.1-dev libgtk-3-dev librsvg2-dev
  libayatana-appindicator3-dev libsoup-3.0-dev libssl-dev)
if [ "$want_test" = 1 ]; then
  apt_pkgs+=(xvfb webkit2gtk-driver chromium imagemagick python3-venv)
fi
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  log "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- Rust toolchain pieces -------------------------------------------------
command -v cargo >/dev/null || { echo "Rust is missing: install it with rustup (https://rustup.rs) and run this again." >&2; exit 1; }
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
if [ "$want_test" = 1 ]; then
  command -v cargo-nextest >/dev/null || { log "installing cargo-nextest"; cargo install cargo-nextest --locked; }
  command -v tauri-driver >/dev/null || { log "installing tauri-driver"; cargo install tauri-driver --locked --version '^2'; }
  # Coverage-guided fuzzing on the stable toolchain (tests/fuzz/README.md).
  command -v cargo-fuzz >/dev/null || { log "installing cargo-fuzz"; cargo install cargo-fuzz --locked; }
  # Phone targets, for `cargo check` of the pure-Rust crates (no NDK or Xcode needed for those).
  for target in aarch64-linux-android aarch64-apple-ios; do
    rustup target list --installed | grep -q "^$target\$" || rustup target add "$target"
  done
fi

# --- npm packages ----------------------------------------------------------
log "installing npm packages for ui/"
npm --prefix ui ci --no-audit --no-fund --loglevel=error
if [ "$want_test" = 1 ] && [ -f tests/e2e/package.json ]; then
  log "installing npm packages for tests/e2e/"
  npm --prefix tests/e2e ci --no-audit --no-fund --loglevel=error
fi
log "done"
