#!/usr/bin/env bash
# Chaos/soak run (issue #15): two voxmail nodes sharing one PostgreSQL database and one audio
# directory take mixed load for CHAOS_MINUTES while, one after the other, node A is killed (-9)
# and restarted, the database is cut, the audio disk is filled and 200 slow clients connect.
# At the end the invariants are checked; any broken one makes the exit code non-zero.
#
#   sudo bash bench/chaos.sh          (from the repository root; root: it mounts a tmpfs)
#
# - Build: `cargo build --release` of this tree (CARGO_TARGET_DIR is honoured), or the binary
#   named by CHAOS_VOXMAIL.
# - PostgreSQL: a fresh database voxmail_chaos_<pid> on CHAOS_PG (127.0.0.1:5432, user postgres,
#   trust auth), dropped at the end. The nodes reach it through a TCP proxy run by bench/chaos.py,
#   which can close every connection and refuse new ones; the CLI set-up goes direct.
# - Audio: `audio.store = "fs"` in one directory on a tmpfs of CHAOS_TMPFS_MB (512) MiB mounted
#   here, shared by both nodes (as an NFS mount would be); unmounted at the end.
# - Limits: every [http] limit at its default. The load stays under them (at most ~45 uploads in
#   flight per node and source address, including the slow clients' trickled bodies, against 64);
#   any 408/429/503/507 is counted as designed degradation in the outcome tables, never as loss.
# - The load, the faults, the invariants and the figures are bench/chaos.py's (see its docstring).
# Needs: cargo, python3, psql, curl, mount (tmpfs). Tunables: CHAOS_MINUTES (3), CHAOS_MAILBOXES
# (40), CHAOS_SEED, CHAOS_VOXMAIL, CHAOS_PG, CHAOS_TMPFS_MB; CHAOS_KEEP=1 keeps the temp directory
# (configs, node logs, the raw request log).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
PG=${CHAOS_PG:-127.0.0.1:5432}
PG_HOST=${PG%:*}
PG_PORT=${PG##*:}
TMPFS_MB=${CHAOS_TMPFS_MB:-4096}

log() { printf '[chaos] %s\n' "$*" >&2; }
[[ $EUID -eq 0 ]] || { log "run as root: the audio directory is a tmpfs mounted by this script"; exit 1; }
for cmd in python3 psql curl mount umount; do
    command -v "$cmd" >/dev/null 2>&1 || { log "missing: $cmd"; exit 1; }
done

if [[ -n ${CHAOS_VOXMAIL:-} ]]; then
    VOXMAIL=$CHAOS_VOXMAIL
else
    log "cargo build --release"
    cargo build --release --quiet --bin voxmail
    VOXMAIL=$TARGET/release/voxmail
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/voxmail-chaos.XXXXXX")
MNT=$TMP/disk
DB=voxmail_chaos_$$
psql_() { psql -X -q -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U postgres "$@"; }
# shellcheck disable=SC2317  # invoked by the trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    # chaos.py stops its nodes itself; this catches what a crash of it would leave.
    if [[ -f $TMP/pids ]]; then
        while read -r pid; do
            kill -KILL "$pid" 2>/dev/null || true
        done <"$TMP/pids"
    fi
    if mountpoint -q "$MNT"; then umount "$MNT" || umount -l "$MNT" || true; fi
    psql_ -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" || true
    if [[ ${CHAOS_KEEP:-0} == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$MNT"
mount -t tmpfs -o "size=${TMPFS_MB}m,mode=0755" chaos-audio "$MNT"
mkdir -p "$MNT/audio"
psql_ -d postgres -c "CREATE DATABASE $DB"
DIRECT_URL="postgres://postgres@$PG_HOST:$PG_PORT/$DB"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
PROXY_PORT=$(free_port)
for node in a b; do
    mkdir -p "$TMP/$node"
    cat >"$TMP/$node.toml" <<TOML
data_dir = "$TMP/$node"
node_id = "chaos-$node"
[http]
listen = "127.0.0.1:$(free_port)"
[database]
url = "postgres://postgres@127.0.0.1:$PROXY_PORT/$DB"
# Two nodes' pools plus the other sessions' tests on one PostgreSQL of max_connections = 100.
max_connections = 10
[audio]
dir = "$MNT/audio"
[email]
enabled = false
TOML
done

vox() { env -u VOXMAIL_CONFIG "$VOXMAIL" --config "$TMP/a.toml" --database-url "$DIRECT_URL" "$@"; }
vox context create chaos >/dev/null
TOKEN=$(vox apikey create --name chaos --role admin 2>/dev/null)

log "voxmail $("$VOXMAIL" --version | awk '{print $2}') at $(git rev-parse --short HEAD 2>/dev/null || echo '?'); load average $(cut -d' ' -f1-3 /proc/loadavg)"
python3 "$ROOT/bench/chaos.py" \
    --voxmail "$VOXMAIL" --tmp "$TMP" --audio-dir "$MNT/audio" --disk "$MNT" \
    --proxy-port "$PROXY_PORT" --pg "$PG_HOST:$PG_PORT" --db "$DB" --token "$TOKEN" \
    --minutes "${CHAOS_MINUTES:-3}" --mailboxes "${CHAOS_MAILBOXES:-40}" \
    ${CHAOS_SEED:+--seed "$CHAOS_SEED"}
