#!/usr/bin/env bash
# schemathesis over /v1/openapi.json of a fresh voxmail: every operation, every check, bounded.
# Every check is on by default; schemathesis.toml turns a few off for single operations, each with
# its reason (a `--checks` option here would override those exceptions).
# Starts the debug binary `cargo test` built on a throwaway data directory (SQLite + fs audio) with
# an admin key, on 127.0.0.1 and a port the kernel picks, and stops it afterwards. Exits non-zero
# on any failure. Usage: tests/schemathesis/run.sh [extra `st run` options]
#   VOXMAIL_BIN   the binary (default ${CARGO_TARGET_DIR:-target}/debug/voxmail)
#   ST            the schemathesis CLI (default: st on PATH); .ci/run installs the version pinned
#                 in tests/schemathesis/requirements.txt
#   ST_MAX_EXAMPLES  test cases per operation and phase (default 40)
#   ST_MAX_TIME      seconds for the whole run (default 240)
set -euo pipefail
cd "$(dirname "$0")/../.."

bin=$(realpath "${VOXMAIL_BIN:-${CARGO_TARGET_DIR:-target}/debug/voxmail}")
st="${ST:-st}"
work=$(mktemp -d)
server=""
cleanup() {
  if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then
    kill -TERM "$server"
    wait "$server" || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# No VOXMAIL_* setting of the caller's environment reaches the server.
unset $(env | sed -n 's/^\(VOXMAIL_[A-Za-z0-9_]*\)=.*/\1/p') RUST_LOG
token=$("$bin" --data-dir "$work/data" apikey create --name schemathesis --role admin)

# The log exists before the server starts: the loop below may read it before the background
# shell has opened it (seen on a loaded machine: sed failed and set -e ended the run).
: >"$work/server.log"
"$bin" --data-dir "$work/data" serve --listen 127.0.0.1:0 >>"$work/server.log" 2>&1 &
server=$!
# The server logs its bound address once it accepts connections.
port=""
while [ -z "$port" ]; do
  if ! kill -0 "$server" 2>/dev/null; then
    echo "voxmail exited before listening:" >&2
    cat "$work/server.log" >&2
    exit 1
  fi
  port=$(sed -n 's/.*voxmail listening.*listen=127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/server.log" | head -n 1)
  [ -n "$port" ] || sleep 0.1
done
base="http://127.0.0.1:$port"

# A context and a mailbox, so that examples naming `default` or `1001@default` reach the handlers.
curl -fsS -o /dev/null -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
  -d '{"name":"default"}' "$base/v1/contexts"
curl -fsS -o /dev/null -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
  -d '{"mailbox":"1001","context":"default"}' "$base/v1/mailboxes"

status=0
# In the scratch directory: schemathesis keeps a .schemathesis/ cache where it runs.
config="$PWD/tests/schemathesis/schemathesis.toml"
export SCHEMATHESIS_HOOKS=hooks
export PYTHONPATH="$PWD/tests/schemathesis${PYTHONPATH:+:$PYTHONPATH}"
(cd "$work" && "$st" --config-file "$config" run "$base/v1/openapi.json" \
  --header "Authorization: Bearer $token" \
  --max-examples "${ST_MAX_EXAMPLES:-40}" \
  --max-time "${ST_MAX_TIME:-240}" \
  --request-timeout 10 \
  --generation-database none \
  --seed "${ST_SEED:-$RANDOM}" \
  --no-color \
  "$@") || status=$?

if grep -E ' (ERROR|WARN) ' "$work/server.log" | grep -v 'problem=' >/dev/null; then
  echo "== server log (errors and warnings)" >&2
  grep -E ' (ERROR|WARN) ' "$work/server.log" | tail -n 40 >&2
fi
exit "$status"
