#!/usr/bin/env bash
# SSE fan-out latency benchmark: voxmail /v1/events vs. nginx + nchan, same client, same method.
#
#   bash bench/sse_latency.sh          (from the repository root)
#
# For 1, 100 and 1,000 connected subscribers it runs bench/sse_latency.rs (a Rust load client,
# `cargo bench --bench sse_latency`) against
#   - voxmail: N streams on GET /v1/events?context=default; each event is a deposit
#     POST /v1/mailboxes/<mb>@default/messages (audio/PCMU, 8000 bytes = 1 s); latency = deposit
#     POST sent → event read by each subscriber (the deposit round-trip is reported separately);
#   - nchan:   N streams on an `nchan_subscriber eventsource` location; each event is a POST to the
#     `nchan_publisher` location of the same channel; latency = publish POST sent → event read.
# Events are published one at a time (the next one only after all N subscribers got the previous
# one or 2 s passed), after a warm-up event every subscriber must have seen.
#
# Needs: cargo, curl, nginx with libnginx-mod-nchan (installed with apt-get if absent; the Debian
# nginx service is kept from starting). Everything runs on 127.0.0.1 under a temporary directory
# that is removed at the end, with the processes this script started.
#
# Tunables (environment): SSE_LEVELS ("1 100 1000"), SSE_EVENTS (200 per level),
# SSE_TIMEOUT_MS (2000), NCHAN_WORKERS (nginx worker_processes, default auto = one per core),
# BENCH_KEEP=1 keeps the temporary directory (logs, client outputs).
# VOXMAIL_* variables reach the server and the admin commands.
set -euo pipefail

LEVELS=${SSE_LEVELS:-"1 100 1000"}
EVENTS=${SSE_EVENTS:-200}
TIMEOUT_MS=${SSE_TIMEOUT_MS:-2000}
NCHAN_WORKERS=${NCHAN_WORKERS:-auto}
NCHAN_SO=/usr/lib/nginx/modules/ngx_nchan_module.so

cd "$(dirname "$0")/.."
ROOT=$(pwd)

log() { printf '[sse-bench] %s\n' "$*" >&2; }

# --- tools ---------------------------------------------------------------------------------------
missing=()
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
[[ -f $NCHAN_SO ]] || missing+=(libnginx-mod-nchan)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if ((${#missing[@]})); then
    log "installing missing packages: ${missing[*]}"
    if [[ $EUID -ne 0 ]]; then
        log "not root: install them first (apt-get install ${missing[*]})"
        exit 1
    fi
    # Keep the package's own nginx service from starting on port 80: a policy-rc.d that forbids
    # starting services, unless one is already in place (Docker images usually have one).
    added_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        added_policy=1
    fi
    had_pid=0; [[ -s /run/nginx.pid ]] && had_pid=1
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    if ((added_policy)); then rm -f /usr/sbin/policy-rc.d; fi
    # Should the install have started the Debian service anyway, stop the instance it started.
    if ((!had_pid)) && [[ -s /run/nginx.pid ]]; then
        log "stopping the nginx service the package started"
        kill -QUIT "$(cat /run/nginx.pid)" 2>/dev/null || true
    fi
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[[ -f $NCHAN_SO ]] || { log "nchan module not found at $NCHAN_SO"; exit 1; }

# --- build -------------------------------------------------------------------------------------
log "building voxmail (release) and the load client"
cargo build --release --quiet
VOXMAIL=${CARGO_TARGET_DIR:-$ROOT/target}/release/voxmail
BENCH_BIN=$(cargo bench --bench sse_latency --no-run 2>&1 \
    | sed -n 's/.*Executable .*(\(.*\))$/\1/p' | tail -1)
[[ -n $BENCH_BIN && -x $BENCH_BIN ]] || BENCH_BIN=$ROOT/$BENCH_BIN
[[ -x $BENCH_BIN ]] || { log "could not find the sse_latency bench executable"; exit 1; }

# --- file descriptors ----------------------------------------------------------------------------
# 1,000 streams need ~1,000 descriptors in the client and in each server.
hard=$(ulimit -Hn)
want=65536
if [[ $hard != unlimited ]] && ((hard < want)); then want=$hard; fi
ulimit -n "$want"
max_level=0
for n in $LEVELS; do ((n > max_level)) && max_level=$n; done
if (($(ulimit -n) < max_level + 512)); then
    log "ulimit -n is $(ulimit -n): too low for $max_level subscribers"
    exit 1
fi
log "ulimit -n $(ulimit -n)"

# --- temp dir, cleanup ---------------------------------------------------------------------------
TMP=$(mktemp -d /tmp/voxmail-sse-bench.XXXXXX)
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then
        log "kept $TMP"
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free port below the ephemeral range (the 1,000 client sockets take ephemeral ports, which a
# listener cannot then bind).
free_port() {
    local p lo=32768
    read -r lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
    ((lo > 12000)) || lo=32768
    for _ in $(seq 1 200); do
        p=$((10000 + RANDOM % (lo - 10000)))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return
        fi
    done
    log "no free port found"
    exit 1
}

wait_http() { # url pid log...
    local url=$1 pid=$2
    shift 2
    for _ in $(seq 1 100); do
        if curl -s -o /dev/null "$url"; then return 0; fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    log "$url never answered; log:"
    tail -n 20 "$@" >&2 || true
    exit 1
}

# --- voxmail -------------------------------------------------------------------------------------
VM_DIR=$TMP/voxmail
mkdir -p "$VM_DIR"
VM_PORT=$(free_port)
vm() { "$VOXMAIL" --data-dir "$VM_DIR" "$@"; }
vm context create default >/dev/null
TOKEN=$(vm apikey create --name sse-bench --role admin | tail -1 | tr -d '[:space:]')
mb=1001
for _ in $LEVELS; do
    vm mailbox create "$mb@default" --maxmsg 9999 >/dev/null
    mb=$((mb + 1))
done
"$VOXMAIL" serve --data-dir "$VM_DIR" --listen "127.0.0.1:$VM_PORT" >"$TMP/voxmail.log" 2>&1 &
VM_PID=$!
PIDS+=($VM_PID)
wait_http "http://127.0.0.1:$VM_PORT/healthz" "$VM_PID" "$TMP/voxmail.log"
log "voxmail on 127.0.0.1:$VM_PORT"

# --- nginx + nchan -------------------------------------------------------------------------------
NG_DIR=$TMP/nginx
mkdir -p "$NG_DIR/logs"
NG_PORT=$(free_port)
cat >"$NG_DIR/nginx.conf" <<EOF
load_module $NCHAN_SO;
daemon off;
master_process on;
worker_processes $NCHAN_WORKERS;
worker_rlimit_nofile $(ulimit -n);
pid $NG_DIR/nginx.pid;
error_log $NG_DIR/logs/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $NG_DIR/client_body;
    proxy_temp_path $NG_DIR/proxy;
    fastcgi_temp_path $NG_DIR/fastcgi;
    uwsgi_temp_path $NG_DIR/uwsgi;
    scgi_temp_path $NG_DIR/scgi;
    server {
        listen 127.0.0.1:$NG_PORT;
        location ~ ^/sub/(\w+)\$ {
            nchan_subscriber eventsource;
            nchan_channel_id \$1;
            nchan_subscriber_first_message newest;
        }
        location ~ ^/pub/(\w+)\$ {
            nchan_publisher;
            nchan_channel_id \$1;
        }
        location = /ping { return 200 "ok\n"; }
    }
}
EOF
"$NGINX" -p "$NG_DIR" -c "$NG_DIR/nginx.conf" -e "$NG_DIR/logs/error.log" \
    >"$TMP/nginx.out" 2>&1 &
NG_PID=$!
PIDS+=($NG_PID)
wait_http "http://127.0.0.1:$NG_PORT/ping" "$NG_PID" "$TMP/nginx.out" "$NG_DIR/logs/error.log"
log "nginx+nchan on 127.0.0.1:$NG_PORT (worker_processes $NCHAN_WORKERS)"

busy=$(ps -eo pcpu=,comm= --sort=-pcpu | awk '$1 > 20 {print $2"("$1"%)"}' | head -5 | xargs)
[[ -n $busy ]] && log "warning: other busy processes: $busy — figures will be noisy"

# --- runs ----------------------------------------------------------------------------------------
declare -A RES CPU
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)
# CPU time (user + system, ms) of a process and its children (nginx: master and workers).
cpu_ms() { # pid
    local pids ticks=0 p f
    local -a a
    pids="$1 $(ps -o pid= --ppid "$1" 2>/dev/null | xargs)"
    for p in $pids; do
        f=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        f=${f##*) }
        read -r -a a <<<"$f"
        ticks=$((ticks + a[11] + a[12]))
    done
    echo $((ticks * 1000 / CLK_TCK))
}
field() { # line key
    sed -n "s/.*\b$2=\([0-9]*\).*/\1/p" <<<"$1"
}
run() { # target subs sub_url pub_url server_pid
    local out c0
    c0=$(cpu_ms "$5")
    out=$("$BENCH_BIN" --target "$1" --subs "$2" --sub-url "$3" --pub-url "$4" --token "$TOKEN" \
        --events "$EVENTS" --timeout-ms "$TIMEOUT_MS" 2>"$TMP/$1-$2.err" | tee "$TMP/$1-$2.out") || {
        log "$1 with $2 subscribers failed:"
        cat "$TMP/$1-$2.err" >&2
        exit 1
    }
    CPU[$1,$2]=$(($(cpu_ms "$5") - c0))
    grep -v '^RESULT' <<<"$out" | sed 's/^/    /' >&2
    log "$1 server CPU during the run (connect, warm-up, events): ${CPU[$1,$2]} ms"
    RES[$1,$2]=$(grep '^RESULT' <<<"$out")
}

mb=1001
for n in $LEVELS; do
    log "voxmail, $n subscribers"
    run voxmail "$n" "http://127.0.0.1:$VM_PORT/v1/events?context=default" \
        "http://127.0.0.1:$VM_PORT/v1/mailboxes/$mb@default/messages" "$VM_PID"
    log "nchan, $n subscribers"
    run nchan "$n" "http://127.0.0.1:$NG_PORT/sub/bench$n" "http://127.0.0.1:$NG_PORT/pub/bench$n" \
        "$NG_PID"
    mb=$((mb + 1))
done

# --- table ---------------------------------------------------------------------------------------
msf() { awk -v u="$1" 'BEGIN { printf "%.2f", u / 1000 }'; }
echo
echo "SSE publish -> event latency, ms ($EVENTS sequential events per row, lost = not within ${TIMEOUT_MS} ms)"
printf '%-11s | %-33s | %-33s\n' "" "voxmail (deposit -> event)" "nchan (publish -> event)"
printf '%-11s | %7s %7s %7s %9s | %7s %7s %7s %9s\n' subscribers p50 p99 max lost p50 p99 max lost
printf -- '------------+-----------------------------------+-----------------------------------\n'
for n in $LEVELS; do
    v=${RES[voxmail,$n]} c=${RES[nchan,$n]}
    printf '%-11s | %7s %7s %7s %9s | %7s %7s %7s %9s\n' "$n" \
        "$(msf "$(field "$v" p50_us)")" "$(msf "$(field "$v" p99_us)")" \
        "$(msf "$(field "$v" max_us)")" "$(field "$v" lost)/$((EVENTS * n))" \
        "$(msf "$(field "$c" p50_us)")" "$(msf "$(field "$c" p99_us)")" \
        "$(msf "$(field "$c" max_us)")" "$(field "$c" lost)/$((EVENTS * n))"
done
echo
echo "Publish round-trip alone, ms (voxmail: deposit POST -> 201; nchan: publish POST -> answer);"
echo "CPU, ms per event: server (whole run incl. connect and warm-up) and load client (timed events)"
printf '%-11s | %7s %7s %7s %7s %7s | %7s %7s %7s %7s %7s\n' subscribers \
    "vx p50" "vx p99" "vx max" srvCPU cliCPU "nc p50" "nc p99" "nc max" srvCPU cliCPU
for n in $LEVELS; do
    v=${RES[voxmail,$n]} c=${RES[nchan,$n]}
    printf '%-11s | %7s %7s %7s %7s %7s | %7s %7s %7s %7s %7s\n' "$n" \
        "$(msf "$(field "$v" pub_p50_us)")" "$(msf "$(field "$v" pub_p99_us)")" \
        "$(msf "$(field "$v" pub_max_us)")" \
        "$(msf $((CPU[voxmail,$n] * 1000 / EVENTS)))" \
        "$(msf $(($(field "$v" client_cpu_ms) * 1000 / EVENTS)))" \
        "$(msf "$(field "$c" pub_p50_us)")" "$(msf "$(field "$c" pub_p99_us)")" \
        "$(msf "$(field "$c" pub_max_us)")" \
        "$(msf $((CPU[nchan,$n] * 1000 / EVENTS)))" \
        "$(msf $(($(field "$c" client_cpu_ms) * 1000 / EVENTS)))"
done
