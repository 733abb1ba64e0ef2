"""The run of bench/chaos.sh (which builds, mounts the tmpfs, creates the database, the context
and an admin key, and cleans up). Standard library only.

    python3 chaos.py --voxmail BIN --tmp DIR --audio-dir DIR --disk MOUNT --proxy-port P \
        --pg HOST:PORT --db NAME --token TOKEN [--minutes 3] [--mailboxes 40] [--seed N]

Starts a TCP proxy (127.0.0.1:P -> the PostgreSQL server) and two nodes, A and B, from
DIR/a.toml and DIR/b.toml; creates the mailboxes; then for --minutes runs, against both nodes
at random (no balancer: a request to a dead node fails as a client would see it, no retries):
6 depositors (µ-law WAV of 1-6 s of random bytes, 10 % urgent; sha256 and id of every 201 kept),
3 readers (a mailbox's listing, all pages, and its MWI counts), 2 renderers (?format=opus and
?format=wav of a stored message, each checked to start with OggS / RIFF), 1 mover (moves to Old
or Work, marks read, deletes 15 % of the deposits), 4 SSE clients on /v1/events (2 per node,
resuming with Last-Event-ID on the other node when a stream breaks), a /readyz prober (every
0.5 s, both nodes) and an RSS sampler (every 1 s, /proc/PID/status). After a warm-up, four faults
in sequence, one per slot: kill -9 of A (restarted 3 s later), the database cut for 10 s (every
proxied connection closed, new ones refused), the audio disk filled for 10 s (a filler file
written until ENOSPC, then removed), 200 slow clients for 20 s (headers trickled a byte a second,
deposit bodies trickled at 5 B/s, connections that send nothing), a third each, half per node.

Then the load stops and, once both /readyz are 200, the invariants are checked (any failure:
exit 1): every message answered 201 and not deleted by the script is listed and its original
audio is byte-identical (sha256), and no message deleted with 204 is back; per mailbox the MWI
counts of each node equal the counts of its listing; no `.part` file in the audio tmp/ other
than those present when A was killed (a crashed writer's leftovers are listed apart), no
PostgreSQL session `idle in transaction` (or a query active) for more than 5 s; every SSE client
has seen the `message.deposited` event of every 201; each node's RSS, settled, within 25 % +
16 MiB of its post-warm-up baseline (A's after its restart against its first life's); both
/readyz 200. Prints requests by outcome, latency p50/p99 per phase, the time to recover after
each fault, RSS per node, the slow clients' fate and the invariants.
"""

import argparse
import hashlib
import http.client
import json
import os
import random
import select
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
import tomllib
import uuid

T0 = time.monotonic()
CONTEXT = "chaos"
MIB = 1024 * 1024
RSS_MARGIN = (1.25, 16.0)  # end <= baseline * 1.25 + 16 MiB
STUCK_SECS = 5.0


def now():
    return time.monotonic() - T0


def log(msg):
    print(f"[chaos {now():7.1f}s] {msg}", file=sys.stderr, flush=True)


# --- the TCP proxy in front of PostgreSQL ---------------------------------------------------------

class Proxy:
    """127.0.0.1:port -> target; `cut()` closes every connection and refuses new ones (the
    listening socket is closed) until `restore()`."""

    def __init__(self, port, target):
        self.port, self.target = port, target
        self.lock = threading.Lock()
        self.socks = set()
        self.listener = None
        self.accepted = 0
        self.restore()

    def restore(self):
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", self.port))
        ls.listen(128)
        ls.settimeout(0.2)
        self.listener = ls
        threading.Thread(target=self._accept, args=(ls,), daemon=True).start()

    def cut(self):
        ls, self.listener = self.listener, None
        ls.close()
        with self.lock:
            socks, self.socks = self.socks, set()
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        return len(socks) // 2

    def _accept(self, ls):
        while self.listener is ls:
            try:
                c, _ = ls.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            try:
                u = socket.create_connection(self.target, timeout=5)
                u.settimeout(None)
            except OSError:
                c.close()
                continue
            c.settimeout(None)
            with self.lock:
                if self.listener is not ls:
                    c.close()
                    u.close()
                    return
                self.socks |= {c, u}
                self.accepted += 1
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        with self.lock:
            self.socks.discard(src)
            self.socks.discard(dst)


# --- nodes ----------------------------------------------------------------------------------------

class Node:
    def __init__(self, name, vox, tmp):
        self.name, self.vox, self.tmp = name, vox, tmp
        self.config = os.path.join(tmp, f"{name.lower()}.toml")
        with open(self.config, "rb") as f:
            host, _, port = tomllib.load(f)["http"]["listen"].rpartition(":")
        self.addr = (host, int(port))
        self.proc = None
        self.lives = 0

    def start(self):
        env = {k: v for k, v in os.environ.items() if k != "VOXMAIL_CONFIG"}
        env["NO_COLOR"] = "1"
        out = open(os.path.join(self.tmp, f"{self.name.lower()}.log"), "ab")
        self.proc = subprocess.Popen([self.vox, "--config", self.config, "serve"],
                                     stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env)
        out.close()
        self.lives += 1
        with open(os.path.join(self.tmp, "pids"), "a") as f:
            f.write(f"{self.proc.pid}\n")

    def wait_ready(self, secs=60):
        deadline = time.monotonic() + secs
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"node {self.name} exited with {self.proc.returncode}")
            if request(self, "GET", "/readyz", timeout=2)[0] == "200":
                return True
            time.sleep(0.1)
        return False

    def rss_mib(self):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return None

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(35)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


TOKEN = ""


def outcome_of(exc):
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected,
                        http.client.IncompleteRead, ConnectionAbortedError)):
        return "reset"
    return "error:" + type(exc).__name__


class Conns:
    """One kept-alive connection per node for one worker."""

    def __init__(self):
        self.c = {}

    def request(self, node, method, path, body=None, headers=None, timeout=30):
        conn = self.c.get(node.name)
        if conn is None:
            conn = self.c[node.name] = http.client.HTTPConnection(*node.addr, timeout=timeout)
        h = {"Authorization": f"Bearer {TOKEN}"}
        h.update(headers or {})
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            data = r.read()
            if r.will_close:
                conn.close()
                self.c.pop(node.name, None)
            return str(r.status), data
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            self.c.pop(node.name, None)
            return outcome_of(e), b""


def request(node, method, path, body=None, headers=None, timeout=30):
    c = Conns()
    try:
        return c.request(node, method, path, body, headers, timeout)
    finally:
        for conn in c.c.values():
            conn.close()


# --- shared state ---------------------------------------------------------------------------------

class State:
    def __init__(self, nodes, mailboxes, seed):
        self.nodes = nodes
        self.mailboxes = mailboxes
        self.seed = seed
        self.phase = "warm-up"
        self.phases = [(now(), time.time(), "warm-up")]  # (t, wall clock, name) of each change
        self.records = []  # (t_start, t_end, phase, kind, node, outcome)
        self.lock = threading.Lock()
        self.msgs = {}  # id -> dict(mb, sha, role, state)
        self.keep, self.to_delete = [], []
        self.stop_load = threading.Event()
        self.stop_all = threading.Event()
        self.probes = []  # (t, node, outcome)
        self.rss = {n.name: [] for n in nodes}  # (t, life, MiB)
        self.faults = []  # dict(name, start, end)
        self.kill_snapshot = set()
        self.warm_end = 0.0

    def set_phase(self, name):
        self.phases.append((now(), time.time(), name))
        self.phase = name

    def phase_at_wall(self, wall):
        return [name for _, w, name in self.phases if w <= wall][-1:] or ["before"]

    def record(self, t0, kind, node, outcome, phase):
        self.records.append((t0, now(), phase, kind, node.name, outcome))

    def timed(self, conns, kind, node, method, path, **kw):
        phase, t0 = self.phase, now()
        status, data = conns.request(node, method, path, **kw)
        self.record(t0, kind, node, status, phase)
        return status, data


def wav_ulaw(rng, secs):
    n = int(secs * 8000)
    fmt = struct.pack("<HHIIHHH", 7, 1, 8000, 8000, 1, 8, 0)
    body = (b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
            + b"fact" + struct.pack("<II", 4, n) + b"data" + struct.pack("<I", n) + rng.randbytes(n))
    return b"RIFF" + struct.pack("<I", len(body)) + body


def depositor(st, i):
    rng, conns = random.Random(st.seed * 1000 + i), Conns()
    while not st.stop_load.is_set():
        node, mb = rng.choice(st.nodes), rng.choice(st.mailboxes)
        body = wav_ulaw(rng, rng.uniform(1, 6))
        urgent = rng.random() < 0.1
        q = f"?caller_id_num={rng.randrange(10**9)}" + ("&urgent=true" if urgent else "")
        status, data = st.timed(conns, "deposit", node, "POST",
                                f"/v1/mailboxes/{mb}@{CONTEXT}/messages{q}", body=body,
                                headers={"Content-Type": "audio/wav"})
        if status == "201":
            mid = json.loads(data)["id"]
            role = "delete" if rng.random() < 0.15 else "keep"
            with st.lock:
                st.msgs[mid] = dict(mb=mb, sha=hashlib.sha256(body).hexdigest(), role=role,
                                    state="live", t=now(), node=node.name, phase=st.phase)
                (st.keep if role == "keep" else st.to_delete).append(mid)


def reader(st, i):
    rng, conns = random.Random(st.seed * 1000 + 100 + i), Conns()
    while not st.stop_load.is_set():
        node, mb = rng.choice(st.nodes), rng.choice(st.mailboxes)
        cursor = ""
        while True:
            status, data = st.timed(conns, "list", node, "GET",
                                    f"/v1/mailboxes/{mb}@{CONTEXT}/messages?limit=200{cursor}")
            nxt = json.loads(data).get("next_cursor") if status == "200" else None
            if not nxt:
                break
            cursor = f"&cursor={nxt}"
        st.timed(conns, "mwi", node, "GET", f"/v1/mailboxes/{mb}@{CONTEXT}/mwi")


def renderer(st, i):
    rng, conns = random.Random(st.seed * 1000 + 200 + i), Conns()
    while not st.stop_load.is_set():
        with st.lock:
            mid = rng.choice(st.keep) if st.keep else None
            mb = st.msgs[mid]["mb"] if mid else None
        if mid is None:
            time.sleep(0.2)
            continue
        node = rng.choice(st.nodes)
        for fmt, magic in (("opus", b"OggS"), ("wav", b"RIFF")):
            phase, t0 = st.phase, now()
            status, data = conns.request(
                node, "GET", f"/v1/mailboxes/{mb}@{CONTEXT}/messages/{mid}/audio?format={fmt}")
            if status == "200" and not data.startswith(magic):
                status = "bad-body"
            st.record(t0, f"render-{fmt}", node, status, phase)


def mover(st):
    rng, conns = random.Random(st.seed * 1000 + 300), Conns()
    while not st.stop_load.is_set():
        with st.lock:
            victim = st.to_delete.pop(rng.randrange(len(st.to_delete))) if st.to_delete else None
            mid = rng.choice(st.keep) if st.keep else None
        node = rng.choice(st.nodes)
        if victim:
            mb = st.msgs[victim]["mb"]
            status, _ = st.timed(conns, "delete", node, "DELETE",
                                 f"/v1/mailboxes/{mb}@{CONTEXT}/messages/{victim}")
            with st.lock:
                # Only a 204 is known to have deleted it; a 5xx or a lost answer may or may not.
                st.msgs[victim]["state"] = "deleted" if status == "204" else (
                    "live" if status[0] == "4" else "uncertain")
        if mid:
            patch = rng.choice([{"folder": "Old"}, {"read": True}, {"folder": "Work"},
                                {"folder": "INBOX", "read": False}])
            st.timed(conns, "move", node, "PATCH",
                     f"/v1/mailboxes/{st.msgs[mid]['mb']}@{CONTEXT}/messages/{mid}",
                     body=json.dumps(patch), headers={"Content-Type": "application/json"})
        time.sleep(0.05)


class Sse:
    def __init__(self, st, i, node):
        self.st, self.i, self.home = st, i, node
        self.deposited, self.last, self.events = set(), None, 0
        self.seqs = []  # (seq, time received, connection number)
        self.reconnects, self.dups, self.resyncs, self.failed_connects = 0, 0, 0, 0

    def run(self):
        node = self.home
        while not self.st.stop_all.is_set():
            try:
                self.stream(node)
            except (OSError, http.client.HTTPException, ValueError):
                pass
            if self.st.stop_all.is_set():
                return
            self.reconnects += 1
            # Resume on the other node, as a client behind a balancer would be moved.
            node = self.st.nodes[(self.st.nodes.index(node) + 1) % len(self.st.nodes)]
            time.sleep(0.2)

    def stream(self, node):
        conn = http.client.HTTPConnection(*node.addr, timeout=20)
        try:
            h = {"Authorization": f"Bearer {TOKEN}", "Accept": "text/event-stream"}
            if self.last is not None:
                h["Last-Event-ID"] = str(self.last)
            conn.request("GET", f"/v1/events?context={CONTEXT}", headers=h)
            r = conn.getresponse()
            if r.status != 200:
                self.failed_connects += 1
                r.read()
                return
            ev, data = None, []
            while not self.st.stop_all.is_set():
                line = r.readline()
                if not line:
                    return
                line = line.rstrip(b"\r\n").decode()
                if line == "":
                    if ev == "resync":
                        self.resyncs += 1
                    elif data:
                        self.event(json.loads("\n".join(data)))
                    ev, data = None, []
                elif line.startswith("event:"):
                    ev = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip())
        finally:
            conn.close()

    def event(self, e):
        self.events += 1
        if self.last is not None and e["seq"] <= self.last:
            self.dups += 1
            return
        self.last = e["seq"]
        self.seqs.append((e["seq"], now(), self.reconnects))
        if e["type"] == "message.deposited" and e.get("message_id"):
            self.deposited.add(e["message_id"])


def prober(st):
    while not st.stop_all.is_set():
        for n in st.nodes:
            t = now()
            st.probes.append((t, n.name, request(n, "GET", "/readyz", timeout=3)[0]))
        time.sleep(0.5)


def sampler(st):
    while not st.stop_all.is_set():
        for n in st.nodes:
            mib = n.rss_mib()
            if mib is not None:
                st.rss[n.name].append((now(), n.lives, mib))
        time.sleep(1)


# --- slow clients -------------------------------------------------------------------------------

def slow_client(st, kind, node, until, out):
    res = dict(kind=kind, node=node.name, connected=False, closed_at=None, status=None)
    out.append(res)
    t0 = now()
    try:
        s = socket.create_connection(node.addr, timeout=5)
    except OSError:
        return
    res["connected"] = True
    mb = st.mailboxes[0]
    if kind == "headers":
        pending = (f"GET /v1/mailboxes/{mb}@{CONTEXT}/messages HTTP/1.1\r\nHost: x\r\n"
                   + "X-Slow: " + "a" * 1000).encode()
        step = 1.0
    elif kind == "body":
        head = (f"POST /v1/mailboxes/{mb}@{CONTEXT}/messages HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {TOKEN}\r\nContent-Type: audio/wav\r\n"
                f"Content-Length: 200058\r\n\r\n").encode()
        wav = wav_ulaw(random.Random(1), 25)
        try:
            s.sendall(head + wav[:58])
        except OSError:
            pass
        pending, step = wav[58:], 0.2
    else:
        pending, step = b"", 1.0
    buf = b""
    try:
        while now() < until:
            r, _, _ = select.select([s], [], [], step)
            if r:
                data = s.recv(4096)
                if not data:
                    res["closed_at"] = now() - t0
                    break
                buf += data
                continue
            if pending:
                s.send(pending[:1])
                pending = pending[1:]
    except OSError:
        res["closed_at"] = now() - t0
    if buf.startswith(b"HTTP/1.1 "):
        res["status"] = buf[9:12].decode()
    s.close()


# --- faults --------------------------------------------------------------------------------------

def fault_kill(st, a, audio_tmp, down):
    log(f"FAULT kill -9 node A (pid {a.proc.pid})")
    st.set_phase("kill -9 A")
    start = now()
    a.proc.kill()
    a.proc.wait()
    # Taken once A is dead: its writes in flight are all here, B's will be renamed or removed.
    st.kill_snapshot = set(os.listdir(audio_tmp))
    time.sleep(down)
    a.start()
    end = now()
    st.set_phase("after kill")
    log(f"restarted node A (pid {a.proc.pid}) after {end - start:.1f} s; "
        f"{len([f for f in st.kill_snapshot if f.endswith('.part')])} .part files at the kill")
    st.faults.append(dict(name="kill -9 A", start=start, end=end))


def fault_db(st, proxy, secs):
    st.set_phase("db cut")
    start = now()
    n = proxy.cut()
    log(f"FAULT database cut: {n} proxied connections closed, new ones refused for {secs:.0f} s")
    time.sleep(secs)
    proxy.restore()
    end = now()
    st.set_phase("after db cut")
    log("database restored")
    st.faults.append(dict(name="db cut", start=start, end=end))


def fault_disk(st, disk, secs):
    st.set_phase("disk full")
    start = now()
    path, written = os.path.join(disk, "filler"), 0
    with open(path, "wb", buffering=0) as f:
        chunk = b"\0" * MIB
        try:
            while True:
                written += f.write(chunk)
        except OSError:
            pass
    log(f"FAULT audio disk full: {written / MIB:.0f} MiB filler, "
        f"{os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize / 1024:.0f} KiB left, for {secs:.0f} s")
    time.sleep(max(0.0, secs - (now() - start)))
    os.unlink(path)
    end = now()
    st.set_phase("after disk full")
    log("filler removed")
    st.faults.append(dict(name="disk full", start=start, end=end))
    return written


def fault_slow(st, n, secs):
    st.set_phase("slow clients")
    start = now()
    until, out, threads = start + secs, [], []
    for i in range(n):
        kind = ("headers", "body", "idle")[i % 3]
        node = st.nodes[(i // 3) % len(st.nodes)]
        t = threading.Thread(target=slow_client, args=(st, kind, node, until, out), daemon=True)
        t.start()
        threads.append(t)
    log(f"FAULT {n} slow clients for {secs:.0f} s (headers / body / idle, half per node)")
    for t in threads:
        t.join(secs + 10)
    end = now()
    st.set_phase("after slow clients")
    log("slow clients closed")
    st.faults.append(dict(name=f"{n} slow clients", start=start, end=end))
    return out


# --- figures and invariants ----------------------------------------------------------------------

def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def ok(outcome):
    return outcome[0] == "2"


def report_phases(st):
    order = [name for _, _, name in st.phases]
    ends = [t for t, _, _ in st.phases[1:]] + [now()]
    spans = {name: end - t for (t, _, name), end in zip(st.phases, ends)}
    print("Requests by phase (phase = the one current when the request started; latency of every "
          "request, whatever its outcome)")
    print(f"{'phase':19} {'secs':>5} {'reqs':>6} {'2xx %':>6} {'p50 ms':>7} {'p99 ms':>8} "
          f"{'dep p50':>8} {'dep p99':>8}  non-2xx by node:outcome")
    for ph in order:
        rs = [r for r in st.records if r[2] == ph]
        if not rs:
            continue
        lat = [(r[1] - r[0]) * 1e3 for r in rs]
        dep = [(r[1] - r[0]) * 1e3 for r in rs if r[3] == "deposit"]
        bad = {}
        for r in rs:
            if not ok(r[5]):
                k = f"{r[4]}:{r[5]}"
                bad[k] = bad.get(k, 0) + 1
        okp = 100 * sum(ok(r[5]) for r in rs) / len(rs)
        print(f"{ph:19} {spans[ph]:5.0f} {len(rs):6} {okp:6.1f} "
              f"{pct(lat, 50):7.1f} {pct(lat, 99):8.1f} {pct(dep, 50):8.1f} {pct(dep, 99):8.1f}  "
              + " ".join(f"{k}={v}" for k, v in sorted(bad.items())))
    kinds = {}
    for r in st.records:
        kinds.setdefault(r[3], {}).setdefault(r[5], 0)
        kinds[r[3]][r[5]] += 1
    print("\nRequests by kind and outcome (whole run)")
    for k, outs in sorted(kinds.items()):
        print(f"  {k:13} " + " ".join(f"{o}={n}" for o, n in sorted(outs.items())))


def report_recovery(st):
    print("\nFaults and recovery (times from the fault's end; 'first 2xx deposit' = the first "
          "deposit to that node started after the end that got 201)")
    print(f"{'fault':18} {'at s':>6} {'secs':>5} {'node':4} {'readyz during':28} "
          f"{'readyz 200':>10} {'first 2xx deposit':>17}")
    for f in st.faults:
        for n in st.nodes:
            during = {}
            for t, node, o in st.probes:
                if node == n.name and f["start"] <= t < f["end"]:
                    during[o] = during.get(o, 0) + 1
            back = [t for t, node, o in st.probes if node == n.name and t >= f["end"] and o == "200"]
            dep = [r[1] for r in st.records if r[4] == n.name and r[3] == "deposit"
                   and r[0] >= f["end"] and r[5] == "201"]
            fmt = lambda xs: f"+{min(xs) - f['end']:.1f} s" if xs else "never"
            print(f"{f['name']:18} {f['start']:6.1f} {f['end'] - f['start']:5.1f} {n.name:4} "
                  f"{' '.join(f'{o}x{c}' for o, c in sorted(during.items())):28} "
                  f"{fmt(back):>10} {fmt(dep):>17}")


def report_slow(results, secs):
    print(f"\nSlow clients ({secs:.0f} s): closed by the server (seconds after connecting) and "
          "responses received")
    for kind in ("headers", "body", "idle"):
        rs = [r for r in results if r["kind"] == kind]
        closed = sorted(r["closed_at"] for r in rs if r["closed_at"] is not None)
        statuses = {}
        for r in rs:
            if r["status"]:
                statuses[r["status"]] = statuses.get(r["status"], 0) + 1
        print(f"  {kind:8} {len(rs):4} clients, {sum(r['connected'] for r in rs):4} connected, "
              f"{len(closed):4} closed by the server"
              + (f" (after {closed[0]:.1f}-{closed[-1]:.1f} s)" if closed else "")
              + f", responses: {statuses or 'none'}")


class Checks:
    def __init__(self):
        self.results = []

    def check(self, name, passed, detail):
        self.results.append((name, passed, detail))
        log(f"{'PASS' if passed else 'FAIL'} {name}: {detail}")


def settled_get(node, path, tries=5):
    for _ in range(tries):
        status, data = request(node, "GET", path)
        if status == "200" or status == "404":
            return status, data
        time.sleep(1)
    return status, data


def listing(node, mb):
    items, cursor = [], ""
    while True:
        status, data = settled_get(node, f"/v1/mailboxes/{mb}@{CONTEXT}/messages?limit=500{cursor}")
        if status != "200":
            return None
        page = json.loads(data)
        items += page["items"]
        if not page.get("next_cursor"):
            return items
        cursor = f"&cursor={page['next_cursor']}"


def counts_of(items):
    # The rules of COUNTS_SQL (src/store/sql/messages.rs).
    c = dict(new=0, old=0, urgent_new=0, urgent_old=0)
    for m in items:
        f, urgent = m["folder"], m["folder"] == "Urgent" or m["flag"] == "Urgent"
        new = f in ("INBOX", "Urgent") and not m["read"]
        old = f == "Old" or (f in ("INBOX", "Urgent") and m["read"])
        c["new"] += new
        c["old"] += old
        c["urgent_new"] += new and urgent
        c["urgent_old"] += old and urgent
    return c


def outbox(node):
    """Every event of the context, replayed from the start: seq -> event."""
    events, conn = {}, http.client.HTTPConnection(*node.addr, timeout=3)
    try:
        conn.request("GET", f"/v1/events?context={CONTEXT}",
                     headers={"Authorization": f"Bearer {TOKEN}", "Last-Event-ID": "0"})
        r = conn.getresponse()
        while line := r.readline():
            if line.startswith(b"data:"):
                e = json.loads(line[5:])
                events[e["seq"]] = e
    except (OSError, http.client.HTTPException):
        pass  # the end: no event for 3 s
    finally:
        conn.close()
    return events


def sse_gaps(st, sse):
    """Which events a stream skipped, and when: the outbox's events between the first and the last
    the stream received that it did not receive."""
    events, out = outbox(st.nodes[1]), []
    for i, s in enumerate(sse):
        got = {q for q, _, _ in s.seqs}
        if not got:
            continue
        skipped = sorted(q for q in events if min(got) < q < max(got) and q not in got)
        if not skipped:
            continue
        runs, prev = [], None
        for q in skipped:
            if prev is not None and q == prev + 1:
                runs[-1][1] = q
            else:
                runs.append([q, q])
            prev = q
        recv = dict((q, (t, c)) for q, t, c in s.seqs)
        desc = []
        for a, b in runs[:5]:
            before = max((q for q in got if q < a), default=None)
            e = events[a]
            m = st.msgs.get(e.get("message_id") or "", {})
            desc.append(f"seq {a}-{b} ({b - a + 1}; first: {e['type']} by {e['node']}"
                        + (f", 201 at {m['t']:.1f} s in '{m['phase']}'" if m else "")
                        + (f"; previous seq received {before} at {recv[before][0]:.1f} s"
                           if before in recv else "") + ")")
        out.append(f"client {i} (home {s.home.name}) skipped {len(skipped)} events in "
                   f"{len(runs)} runs: " + "; ".join(desc))
    return ("\n        " + "\n        ".join(out)) if out else ""


def invariants(st, args, sse, audio_tmp):
    ck = Checks()
    a, b = st.nodes
    ready = [n.wait_ready(60) for n in st.nodes]
    ck.check("both /readyz 200 after the load", all(ready),
             " ".join(f"{n.name}={'200' if r else 'not 200 within 60 s'}" for n, r in zip(st.nodes, ready)))

    # SSE: every deposit answered 201 must have reached every stream.
    want = set(st.msgs)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(want - s.deposited for s in sse):
        time.sleep(0.5)
    missing = [len(want - s.deposited) for s in sse]
    ck.check("every SSE client saw message.deposited of every 201", not any(missing),
             f"{len(want)} deposits; missing per client {missing}; events {[s.events for s in sse]}; "
             f"reconnects {[s.reconnects for s in sse]}; duplicates {[s.dups for s in sse]}; "
             f"resyncs {[s.resyncs for s in sse]}" + (sse_gaps(st, sse) if any(missing) else ""))
    st.stop_all.set()

    # RSS, settled: sampled over 5 s before the verification reads load the nodes again.
    time.sleep(5)
    rss_rows = []
    for n in st.nodes:
        samples = st.rss[n.name]
        first = [m for t, life, m in samples if life == 1]
        base_s = [m for t, life, m in samples if life == 1 and st.warm_end - 5 <= t <= st.warm_end]
        base = statistics.median(base_s) if base_s else float("nan")
        end_s = []
        for _ in range(5):
            end_s.append(n.rss_mib() or float("nan"))
            time.sleep(1)
        end = statistics.median(end_s)
        peak = max(m for t, life, m in samples)
        limit = base * RSS_MARGIN[0] + RSS_MARGIN[1]
        rss_rows.append((n.name, base, peak, max(first), end, limit, n.lives))
        ck.check(f"RSS of {n.name} back near its baseline", end <= limit,
                 f"baseline {base:.1f} MiB, peak {peak:.1f}, settled end {end:.1f} "
                 f"(limit {limit:.1f}; life {n.lives})")

    # Every 201 present and byte-identical; deleted ones gone; counts equal listings.
    live = {m: v for m, v in st.msgs.items() if v["state"] == "live"}
    deleted = {m for m, v in st.msgs.items() if v["state"] == "deleted"}
    uncertain = {m for m, v in st.msgs.items() if v["state"] == "uncertain"}
    listed, count_bad, list_fail = {}, [], []
    for mb in st.mailboxes:
        for node, other in ((a, b), (b, a)):
            items = listing(node, mb)
            status, data = settled_get(other, f"/v1/mailboxes/{mb}@{CONTEXT}/mwi")
            if items is None or status != "200":
                list_fail.append(f"{mb}@{node.name}")
                continue
            listed.update({m["id"]: mb for m in items})
            mwi, mine = json.loads(data), counts_of(items)
            if any(mwi[k] != v for k, v in mine.items()):
                count_bad.append(f"{mb}: listing on {node.name} {mine} vs MWI on {other.name} "
                                 f"{ {k: mwi[k] for k in mine} }")
    ck.check("MWI counts equal the listing, every mailbox, across nodes",
             not count_bad and not list_fail,
             f"{len(st.mailboxes)} mailboxes x 2; mismatches {len(count_bad)}; unreadable {list_fail}"
             + (f"; first: {count_bad[0]}" if count_bad else ""))
    not_listed = [m for m, v in live.items() if listed.get(m) != v["mb"]]
    back = [m for m in deleted if m in listed]
    extra = [m for m in listed if m not in st.msgs]
    ck.check("every 201 (not deleted) listed in its mailbox; no 204-deleted message listed",
             not not_listed and not back,
             f"{len(live)} expected, {len(not_listed)} not listed, {len(back)} deleted but listed; "
             f"{len(uncertain)} of uncertain fate (delete without answer) not checked; "
             f"{len(extra)} listed without a 201 seen by the client (answer lost)")
    bad, gone, errs = [], [], []
    for i, (mid, v) in enumerate(sorted(live.items())):
        node = st.nodes[i % 2]
        status, data = settled_get(node, f"/v1/mailboxes/{v['mb']}@{CONTEXT}/messages/{mid}/audio")
        if status == "404":
            gone.append(mid)
        elif status != "200":
            errs.append(f"{mid}:{status}")
        elif hashlib.sha256(data).hexdigest() != v["sha"]:
            bad.append(mid)
    ck.check("every 201's original audio byte-identical (sha256)", not bad and not gone and not errs,
             f"{len(live)} read; {len(bad)} differ; {len(gone)} 404; {len(errs)} errors {errs[:3]}")

    # Stuck writers: .part files and PostgreSQL sessions.
    parts = {f for f in os.listdir(audio_tmp) if f.endswith(".part")}
    crashed = parts & st.kill_snapshot
    leaked = parts - st.kill_snapshot
    by_phase = {}
    for f in leaked:
        try:
            st_ = os.stat(os.path.join(audio_tmp, f))
        except OSError:
            continue
        ph = st.phase_at_wall(st_.st_mtime)[0]
        n, size = by_phase.get(ph, (0, 0))
        by_phase[ph] = (n + 1, size + st_.st_size)
    ck.check("no .part file left in the audio tmp/ (except a kill -9's)", not leaked,
             f"{len(leaked)} left by live writers, by phase of last write: "
             + (", ".join(f"{ph} {n} ({size / 1024:.0f} KiB)" for ph, (n, size) in by_phase.items())
                or "none") + "; "
             f"{len(crashed)} left by the writers killed with A (never removed: tmp/ is not swept)")
    q = ("SELECT state, count(*), coalesce(max(extract(epoch FROM now() - state_change)), 0) "
         f"FROM pg_stat_activity WHERE datname = '{args.db}' GROUP BY state ORDER BY state")
    host, port = args.pg.rsplit(":", 1)
    out = subprocess.run(["psql", "-X", "-At", "-F", "|", "-h", host, "-p", port, "-U", "postgres",
                          "-d", "postgres", "-c", q], capture_output=True, text=True)
    rows = [line.split("|") for line in out.stdout.split("\n") if line.strip()]
    stuck = [r for r in rows if (r[0] == "active" or r[0].startswith("idle in transaction"))
             and float(r[2]) > STUCK_SECS]
    ck.check(f"no PostgreSQL session idle in transaction or active > {STUCK_SECS:.0f} s",
             out.returncode == 0 and not stuck,
             "sessions by state (count, oldest s): "
             + "; ".join(f"{r[0] or '-'} {r[1]} {float(r[2]):.0f}" for r in rows)
             + (out.stderr.strip() if out.returncode else ""))
    return ck, rss_rows


def main():
    global TOKEN
    p = argparse.ArgumentParser()
    for flag in ("voxmail", "tmp", "audio-dir", "disk", "pg", "db", "token"):
        p.add_argument(f"--{flag}", required=True)
    p.add_argument("--proxy-port", type=int, required=True)
    p.add_argument("--minutes", type=float, default=3)
    p.add_argument("--mailboxes", type=int, default=40)
    p.add_argument("--seed", type=int, default=int(time.time()))
    args = p.parse_args()
    TOKEN = args.token
    host, port = args.pg.rsplit(":", 1)
    proxy = Proxy(args.proxy_port, (host, int(port)))
    nodes = [Node("A", args.voxmail, args.tmp), Node("B", args.voxmail, args.tmp)]
    audio_tmp = os.path.join(args.audio_dir, "tmp")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        for n in nodes:
            n.start()
        for n in nodes:
            if not n.wait_ready():
                raise SystemExit(f"node {n.name} not ready within 60 s")
        mailboxes = [str(1000 + i) for i in range(args.mailboxes)]
        for mb in mailboxes:
            status, data = request(nodes[0], "POST", "/v1/mailboxes",
                                   json.dumps(dict(mailbox=mb, context=CONTEXT, maxmsg=9999)),
                                   {"Content-Type": "application/json"})
            if status != "201":
                raise SystemExit(f"creating mailbox {mb}: {status} {data[:200]!r}")
        st = State(nodes, mailboxes, args.seed)
        total = args.minutes * 60
        warm = max(15.0, min(30.0, 0.15 * total))
        slot = (total - warm) / 4
        span = lambda s: min(s, 0.6 * slot)
        log(f"seed {args.seed}; {args.minutes:g} min of load on {len(mailboxes)} mailboxes; "
            f"warm-up {warm:.0f} s, then a fault every {slot:.0f} s")
        sse = [Sse(st, i, nodes[i % 2]) for i in range(4)]
        threads = ([threading.Thread(target=depositor, args=(st, i)) for i in range(6)]
                   + [threading.Thread(target=reader, args=(st, i)) for i in range(3)]
                   + [threading.Thread(target=renderer, args=(st, i)) for i in range(2)]
                   + [threading.Thread(target=mover, args=(st,))])
        bg = ([threading.Thread(target=s.run, daemon=True) for s in sse]
              + [threading.Thread(target=prober, args=(st,), daemon=True),
                 threading.Thread(target=sampler, args=(st,), daemon=True)])
        for t in bg + threads:
            t.start()
        start = now()
        at = lambda k: time.sleep(max(0.0, start + warm + k * slot - now()))
        at(0)
        st.warm_end = now()
        fault_kill(st, nodes[0], audio_tmp, down=3)
        at(1)
        fault_db(st, proxy, span(10))
        at(2)
        filled = fault_disk(st, args.disk, span(10))
        at(3)
        slow_secs = span(20)
        slow = fault_slow(st, 200, slow_secs)
        time.sleep(max(0.0, start + total - now()))
        st.set_phase("drain")
        st.stop_load.set()
        log(f"load stopped; {len(st.records)} requests, {len(st.msgs)} deposits answered 201")
        for t in threads:
            t.join(60)
        st.set_phase("checks")
        ck, rss_rows = invariants(st, args, sse, audio_tmp)

        print(f"\nvoxmail chaos run: 2 nodes, PostgreSQL through a TCP proxy, fs audio on a tmpfs; "
              f"{args.minutes:g} min, {len(mailboxes)} mailboxes, seed {args.seed}\n")
        report_phases(st)
        report_recovery(st)
        report_slow(slow, slow_secs)
        print(f"\nDisk fill: {filled / MIB:.0f} MiB of filler. Proxy: {proxy.accepted} database "
              "connections accepted in all.")
        print("\nRSS (MiB): baseline = median over the last 5 s of the warm-up; end = median of 5 "
              "samples once settled (no load); A's end is its second life's")
        print(f"{'node':4} {'baseline':>9} {'peak':>7} {'peak 1st':>9} {'end':>7} {'limit':>7}")
        for name, base, peak, peak1, end, limit, _ in rss_rows:
            print(f"{name:4} {base:9.1f} {peak:7.1f} {peak1:9.1f} {end:7.1f} {limit:7.1f}")
        print("\nInvariants")
        for name, passed, detail in ck.results:
            print(f"  {'PASS' if passed else 'FAIL'}  {name}\n        {detail}")
        failed = [n for n, passed, _ in ck.results if not passed]
        print(f"\n{'FAILED: ' + '; '.join(failed) if failed else 'all invariants hold'}")
        return 1 if failed else 0
    finally:
        for n in nodes:
            n.stop()
        for log_name in ("a", "b"):
            path = os.path.join(args.tmp, f"{log_name}.log")
            if os.path.exists(path):
                with open(path, errors="replace") as f:
                    text = f.read()
                print(f"node {log_name.upper()} log (both lives): {text.count(' ERROR ')} ERROR, "
                      f"{text.count(' WARN ')} WARN, {text.count('panicked')} panics")


if __name__ == "__main__":
    sys.exit(main())
