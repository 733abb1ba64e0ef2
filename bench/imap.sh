#!/usr/bin/env bash
# IMAP storage benchmark (issue #7): listing a mailbox of 1,000 voicemails kept in IMAP, and the
# latency from a mail client's change to the MWI event, each beside a peer measured in the same
# run against the same Dovecot.
#
#   bash bench/imap.sh          (from the repository root)
#
# It builds voxmail (release), starts a private Dovecot (generated config in a temp dir, the one of
# tests/common/dovecot.rs: passwd-file user alice, plaintext LOGIN on a free 127.0.0.1 port) and
# `voxmail serve` on a fresh temp data dir (SQLite) whose config puts context `bench` in IMAP,
# mailbox 1234 logging in as alice. bench/imap_bench.py is the client (Python stdlib only):
#
#   1. MWI, 1 voicemail: a mail client (imaplib, its own session) toggles \Seen on a voicemail in
#      INBOX N times; time from the STORE's tagged OK to the matching `mailbox.changed` (counts)
#      on GET /v1/events?mailbox=1234@bench. Peer, same changes: a raw IDLE session of ours on
#      INBOX, time from the STORE's OK to its untagged FETCH (Dovecot's own notification delay,
#      the floor any IDLE-based watcher has).
#   2. APPEND up to IMAP_BENCH_MESSAGES (1,000) Asterisk-format voicemails (as Asterisk's
#      IMAP_STORAGE writes them, 1 s WAV each) directly with imaplib.
#   3. List: GET /v1/mailboxes/1234@bench/messages, first page (limit 50) and the whole listing
#      (limit 500, and limit 50, following next_cursor); peer: the same IMAP work by imaplib on a
#      kept-open session (NOOP, UID SEARCH on the X-Asterisk-VM-Extension/Context headers, UID
#      FETCH of voxmail's header fields), and on a new session each time.
#   4. MWI again with the 1,000 voicemails (IDLE).
#   5. voxmail restarted with use_idle = false, poll_interval_secs = 1: MWI again (polling).
#   6. A few REST deposits into the full mailbox.
#
# Tunables (environment): IMAP_BENCH_MESSAGES (1000), IMAP_BENCH_RUNS (50 list runs per row),
# IMAP_BENCH_CHANGES (100), IMAP_BENCH_POLL (1; 0 skips the polling run), IMAP_BENCH_DEPOSITS
# (10; 0 skips), DOVECOT (/usr/sbin/dovecot), CARGO_TARGET_DIR (/var/cache/voxmail-target),
# BENCH_KEEP=1 keeps the temp dir (logs, JSON results), BENCH_VOXMAIL_BIN=<path> uses that
# binary instead of building.
set -euo pipefail

MESSAGES=${IMAP_BENCH_MESSAGES:-1000}
RUNS=${IMAP_BENCH_RUNS:-50}
CHANGES=${IMAP_BENCH_CHANGES:-100}
POLL=${IMAP_BENCH_POLL:-1}
DEPOSITS=${IMAP_BENCH_DEPOSITS:-10}
DOVECOT=${DOVECOT:-/usr/sbin/dovecot}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/voxmail-target}
USER_NAME=alice
USER_PW=alice-pw
MAIL_UID=65534

cd "$(dirname "$0")/.."
ROOT=$(pwd)
HELPER=$ROOT/bench/imap_bench.py

log() { printf '[imap-bench] %s\n' "$*" >&2; }

[[ -x $DOVECOT ]] || { log "no dovecot at $DOVECOT (Debian dovecot-imapd)"; exit 1; }
command -v curl >/dev/null || { log "curl is needed"; exit 1; }

# --- build -------------------------------------------------------------------------------------
if [[ -n ${BENCH_VOXMAIL_BIN:-} ]]; then
    VOXMAIL=$BENCH_VOXMAIL_BIN # a binary built elsewhere (script testing); no build
else
    log "building voxmail (release, CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    cargo build --release --quiet
    VOXMAIL=$CARGO_TARGET_DIR/release/voxmail
fi

# --- temp dir, cleanup -------------------------------------------------------------------------
TMP=$(mktemp -d /tmp/voxmail-imap-bench.XXXXXX)
chmod 755 "$TMP"
# A private copy: another build into the same target dir cannot swap the binary mid-run.
cp "$VOXMAIL" "$TMP/voxmail-bin"
VOXMAIL=$TMP/voxmail-bin
VOX_PID=
DV_PID=
descendants() { # pid: every process below it
    local c
    for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do
        echo "$c"
        descendants "$c"
    done
}
stop_voxmail() {
    if [[ -n $VOX_PID ]]; then
        kill -TERM "$VOX_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$VOX_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$VOX_PID" 2>/dev/null || true
        wait "$VOX_PID" 2>/dev/null || true
        VOX_PID=
    fi
}
stop_dovecot() {
    if [[ -n $DV_PID ]]; then
        local kids
        kids=$(descendants "$DV_PID" | xargs)
        doveadm -c "$TMP/dovecot/dovecot.conf" stop >/dev/null 2>&1 || true
        for _ in $(seq 1 50); do kill -0 "$DV_PID" 2>/dev/null || break; sleep 0.1; done
        kill -TERM "$DV_PID" 2>/dev/null || true
        wait "$DV_PID" 2>/dev/null || true
        for p in $kids; do kill -KILL "$p" 2>/dev/null || true; done
        DV_PID=
    fi
}
cleanup() {
    stop_voxmail
    stop_dovecot
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then
        log "kept $TMP"
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$((20000 + RANDOM % 20000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return
        fi
    done
    log "no free port found"
    exit 1
}

# --- Dovecot (the configuration of tests/common/dovecot.rs) ------------------------------------
D=$TMP/dovecot
mkdir -p "$D/mail/$USER_NAME"
chmod 755 "$D"
chown -R "$MAIL_UID:$MAIL_UID" "$D/mail" 2>/dev/null || chmod -R 777 "$D/mail"
printf '%s:{PLAIN}%s:%s:%s::%s::\n' "$USER_NAME" "$USER_PW" "$MAIL_UID" "$MAIL_UID" \
    "$D/mail/$USER_NAME" >"$D/users"
printf 'master:{PLAIN}master-pw\n' >"$D/masters"
IMAP_PORT=$(free_port)
cat >"$D/dovecot.conf" <<EOF
# Generated by bench/imap.sh (the text of tests/common/dovecot.rs): a private Dovecot on 127.0.0.1:$IMAP_PORT.
protocols = imap
listen = 127.0.0.1
base_dir = $D/run
state_dir = $D/state
instance_name = voxmail-bench-$IMAP_PORT
log_path = $D/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_master_user_separator = *
mail_location = maildir:~/Maildir
mail_privileged_group =
first_valid_uid = 1
mail_max_userip_connections = 100
# Tests wait for IDLE wake-ups: keep the fall-back check short.
mailbox_idle_check_interval = 1 secs
passdb {
  driver = passwd-file
  master = yes
  args = scheme=PLAIN username_format=%u $D/masters
}
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $D/users
}
userdb {
  driver = passwd-file
  args = username_format=%u $D/users
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $IMAP_PORT
  }
  inet_listener imaps {
    port = 0
  }
}
service anvil {
  chroot =
}
service stats {
  unix_listener stats-reader {
    mode = 0666
  }
  unix_listener stats-writer {
    mode = 0666
  }
}
EOF
"$DOVECOT" -F -c "$D/dovecot.conf" </dev/null >"$D/stdout.log" 2>&1 &
DV_PID=$!
greeting=
for _ in $(seq 1 150); do
    kill -0 "$DV_PID" 2>/dev/null || break
    greeting=$( (exec 3<>"/dev/tcp/127.0.0.1/$IMAP_PORT" && read -r -t 5 line <&3 && echo "$line") \
        2>/dev/null || true)
    [[ $greeting == '* OK'* ]] && break
    sleep 0.1
done
if [[ $greeting != '* OK'* ]]; then
    log "Dovecot did not start:"
    cat "$D/stdout.log" "$D/dovecot.log" >&2 2>/dev/null || true
    exit 1
fi
log "Dovecot $("$DOVECOT" --version | cut -d' ' -f1) on 127.0.0.1:$IMAP_PORT (pid $DV_PID)"

# --- voxmail -----------------------------------------------------------------------------------
V=$TMP/voxmail
mkdir -p "$V/data"
VOX_PORT=$(free_port)
BASE=http://127.0.0.1:$VOX_PORT
write_config() { # file, extra lines of [imap.contexts.bench]
    cat >"$1" <<EOF
[imap.contexts.bench]
host = "127.0.0.1"
port = $IMAP_PORT
tls = "none"
$2

[imap.contexts.bench.mailboxes.1234]
user = "$USER_NAME"
password = "$USER_PW"
EOF
}
write_config "$V/idle.toml" ""
write_config "$V/poll.toml" $'use_idle = false\npoll_interval_secs = 1'
vm() { "$VOXMAIL" --config "$V/idle.toml" --data-dir "$V/data" "$@"; }
vm context create bench >/dev/null
vm mailbox create 1234@bench --name "Alice Bench" --maxmsg 9999 >/dev/null
TOKEN=$(vm apikey create --name imap-bench --role admin 2>/dev/null | tail -1 | tr -d '[:space:]')

start_voxmail() { # config file
    "$VOXMAIL" serve --config "$1" --data-dir "$V/data" --listen "127.0.0.1:$VOX_PORT" \
        >>"$V/voxmail.log" 2>&1 &
    VOX_PID=$!
    for _ in $(seq 1 100); do
        if curl -sf -o /dev/null "$BASE/healthz"; then
            log "voxmail on $BASE (pid $VOX_PID, $(basename "$1"))"
            return 0
        fi
        kill -0 "$VOX_PID" 2>/dev/null || break
        sleep 0.1
    done
    log "voxmail did not start:"
    tail -n 30 "$V/voxmail.log" >&2
    exit 1
}
start_voxmail "$V/idle.toml"

busy=$(ps -eo pcpu=,comm= --sort=-pcpu | awk '$1 > 20 {print $2"("$1"%)"}' | head -5 | xargs)
[[ -n $busy ]] && log "warning: other busy processes: $busy — figures will be noisy"
log "load average: $(cut -d' ' -f1-3 /proc/loadavg); voxmail $("$VOXMAIL" --version | cut -d' ' -f2) at $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '(no git)')"

IMAP_ARGS=(--imap-port "$IMAP_PORT" --imap-user "$USER_NAME" --imap-password "$USER_PW"
    --mailbox 1234 --context bench)
API_ARGS=(--base "$BASE" --token "$TOKEN")
R=$TMP/results
mkdir -p "$R"
py() { python3 "$HELPER" "$@"; }

# 1. MWI with one voicemail in the mailbox.
py append "${IMAP_ARGS[@]}" --count 1 --start 0
py mwi "${IMAP_ARGS[@]}" "${API_ARGS[@]}" --changes "$CHANGES" --label "1 voicemail, IDLE" \
    --out "$R/mwi-small.json"
# 2. Fill the mailbox.
py append "${IMAP_ARGS[@]}" --count "$((MESSAGES - 1))" --start 1 --out "$R/append.json"
# 3. Listing.
py list "${IMAP_ARGS[@]}" "${API_ARGS[@]}" --runs "$RUNS" --out "$R/list.json"
# 4. MWI with the full mailbox.
py mwi "${IMAP_ARGS[@]}" "${API_ARGS[@]}" --changes "$CHANGES" \
    --label "$MESSAGES voicemails, IDLE" --out "$R/mwi-big.json"
MWI_JSON=("$R/mwi-small.json" "$R/mwi-big.json")
# 5. Polling watcher.
if [[ $POLL == 1 ]]; then
    stop_voxmail
    start_voxmail "$V/poll.toml"
    py mwi "${IMAP_ARGS[@]}" "${API_ARGS[@]}" --changes "$CHANGES" \
        --label "$MESSAGES voicemails, poll 1 s" --timeout 5 --gap-min 0.05 --gap-max 1.05 \
        --out "$R/mwi-poll.json"
    MWI_JSON+=("$R/mwi-poll.json")
fi
# 6. Deposits through the API into the full mailbox.
if ((DEPOSITS > 0)); then
    py deposit "${IMAP_ARGS[@]}" "${API_ARGS[@]}" --runs "$DEPOSITS" --out "$R/deposit.json"
fi

log "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
warn=$(grep -cE 'WARN|ERROR' "$V/voxmail.log" || true)
if ((warn > 0)); then
    log "voxmail logged $warn warnings/errors, first ones:"
    grep -E 'WARN|ERROR' "$V/voxmail.log" | head -n 5 | cut -c1-300 >&2
fi
py report --box 1234@bench --list-json "$R/list.json" --deposit-json "$R/deposit.json" \
    --append-json "$R/append.json" \
    --mwi-json "${MWI_JSON[@]}"
