#!/usr/bin/env bash
# Drives `impchat serve` with the official openai Python client (pinned in requirements.txt).
# Builds nothing: it uses target/debug/impchat (cargo build -p impchat-cli, or any cargo test
# of the workspace, makes it). Extra arguments go to pytest, e.g. `tests/openai/run.sh -k stream`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
binary=${IMPCHAT_BIN:-$root/target/debug/impchat}
if [ ! -x "$binary" ]; then
  echo "tests/openai: $binary is missing; build it first with: cargo build -p impchat-cli" >&2
  exit 1
fi
cd "$here"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# Reinstall only when the pins change.
wanted=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ "$(cat .venv/.requirements-sha 2>/dev/null)" != "$wanted" ]; then
  .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
  echo "$wanted" > .venv/.requirements-sha
fi
IMPCHAT_BIN=$binary exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
