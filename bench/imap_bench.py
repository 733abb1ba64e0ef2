#!/usr/bin/env python3
"""Client side of bench/imap.sh (Python 3 standard library only).

Subcommands (bench/imap.sh runs them; every result is also written as JSON to --out):

  append  APPENDs N voicemails in Asterisk's IMAP_STORAGE format (as fixtures/imap/make.py
          writes them: same headers, multipart, 72-column base64 `msg%04d.wav`) to INBOX.
  list    Times GET /v1/mailboxes/<box>/messages (first page, whole listing) against the same
          IMAP work done by imaplib on one kept-open connection (peer).
  mwi     A mail client (imaplib) toggles \\Seen on one voicemail N times; measures STORE OK ->
          `mailbox.changed` on voxmail's SSE stream, and in the same run STORE OK -> untagged
          FETCH on a raw IDLE connection of our own (peer: Dovecot's notification delay).
  deposit Times POST /v1/mailboxes/<box>/messages (a short WAV) into the mailbox as it is.
  report  Prints the tables from the JSON files.
"""
import argparse
import datetime
import http.client
import imaplib
import json
import math
import os
import queue
import random
import re
import socket
import struct
import sys
import threading
import time

ENDL = "\r\n"
now = time.monotonic


# --- helpers ---------------------------------------------------------------------------------------

def pct(xs, p):
    """Nearest-rank percentile (p in 0..100) of a list; None when empty."""
    if not xs:
        return None
    s = sorted(xs)
    k = max(0, min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1))
    return s[k]


def stats(xs):
    return {"n": len(xs), "p50": pct(xs, 50), "p99": pct(xs, 99), "max": max(xs) if xs else None,
            "min": min(xs) if xs else None}


def log(*a):
    print("[imap-bench]", *a, file=sys.stderr, flush=True)


def wav_pcm16(seconds=1.0, rate=8000, freq=440.0):
    n = int(seconds * rate)
    data = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * freq * i / rate)))
                    for i in range(n))
    return (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
            + b"data" + struct.pack("<I", len(data)) + data)


def asterisk_message(msgnum, mailbox, context, orig_time, msg_id, audio, cidnum="5551234",
                     cidname="Bench Caller", duration=1, fullname="Alice Bench",
                     email="alice@example.com", host="pbx1", pid=4242, nonce=1804289383):
    """A voicemail as Asterisk's IMAP_STORAGE appends it (make_email_file with imap=1), in the
    shape of fixtures/imap/make.py's `message` (format wav, no flag)."""
    t = datetime.datetime.fromtimestamp(orig_time, datetime.timezone.utc)
    date = t.strftime("%A, %B %d, %Y at %I:%M:%S %p")
    dur = f"{duration // 60}:{duration % 60:02d}"
    h = [
        "Date: " + t.strftime("%a, %d %b %Y %H:%M:%S +0000"),
        f"From: Asterisk PBX <asterisk@{host}>",
        f'To: "{fullname}" <{email}>',
        f"Subject: [PBX]: New message {msgnum + 1} in mailbox {mailbox}",
        f"Message-ID: <Asterisk-{msgnum + 1}-{nonce}-{mailbox}-{pid}@{host}>",
        f"X-Asterisk-VM-Message-Num: {msgnum + 1}",
        "X-Asterisk-VM-Server-Name: ",
        f"X-Asterisk-VM-Context: {context}",
        f"X-Asterisk-VM-Extension: {mailbox}",
        "X-Asterisk-VM-Flag: ",
        "X-Asterisk-VM-Priority: 2",
        f"X-Asterisk-VM-Caller-ID-Num: {cidnum}",
        f"X-Asterisk-VM-Caller-ID-Name: {cidname}",
        f"X-Asterisk-VM-Duration: {duration}",
        "X-Asterisk-VM-Category: ",
        "X-Asterisk-VM-Message-Type: Message",
        f"X-Asterisk-VM-Orig-date: {date}",
        f"X-Asterisk-VM-Orig-time: {orig_time}",
        f"X-Asterisk-VM-Message-ID: {msg_id}",
        f"X-Asterisk-CallerID: {cidnum}",
        f"X-Asterisk-CallerIDName: {cidname}",
        "MIME-Version: 1.0",
    ]
    bound = f"----voicemail_{msgnum + 1}{mailbox}{pid}{nonce}"
    out = ENDL.join(h) + ENDL
    out += f'Content-Type: multipart/mixed; boundary="{bound}"' + ENDL
    out += ENDL + ENDL + "This is a multi-part message in MIME format." + ENDL + ENDL
    out += f"--{bound}" + ENDL
    out += "Content-Type: text/plain; charset=ISO-8859-1" + ENDL
    out += "Content-Transfer-Encoding: 8bit" + ENDL + ENDL
    out += (f"Dear {fullname}:" + ENDL + ENDL + "\tJust wanted to let you know you were just left a "
            f"{dur} long message (number {msgnum + 1})" + ENDL + f"in mailbox {mailbox} from {cidname}, "
            f"on {date} so you might" + ENDL + "want to check it when you get a chance.  Thanks!" + ENDL
            + ENDL + "\t\t\t\t--Asterisk" + ENDL + ENDL)
    name = f"msg{msgnum:04d}.wav"
    out += f"--{bound}" + ENDL
    out += f'Content-Type: audio/x-wav; name="{name}"' + ENDL
    out += "Content-Transfer-Encoding: base64" + ENDL
    out += "Content-Description: Voicemail sound attachment." + ENDL
    out += f'Content-Disposition: attachment; filename="{name}"' + ENDL + ENDL
    import base64
    enc = base64.b64encode(audio).decode()
    out += ENDL.join(enc[i:i + 72] for i in range(0, len(enc), 72)) + ENDL
    out += ENDL + ENDL + f"--{bound}--" + ENDL + "." + ENDL
    return out.encode("latin-1")


def imap_login(a):
    m = imaplib.IMAP4(a.imap_host, a.imap_port)
    m.login(a.imap_user, a.imap_password)
    return m


def owner_search(m, mailbox, context, extra=""):
    typ, data = m.uid("SEARCH", None,
                      f'UNDELETED HEADER X-Asterisk-VM-Extension "{mailbox}" '
                      f'HEADER X-Asterisk-VM-Context "{context}"{extra}')
    assert typ == "OK", (typ, data)
    return sorted(int(u) for u in data[0].split())


# voxmail's own header list (src/imap/client.rs LIST_ITEMS), so the peer fetches the same bytes.
LIST_ITEMS = ("(UID FLAGS RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER.FIELDS ("
              "X-Asterisk-VM-Message-Num X-Asterisk-VM-Server-Name X-Asterisk-VM-Context "
              "X-Asterisk-VM-Extension X-Asterisk-VM-Flag X-Asterisk-VM-Priority "
              "X-Asterisk-VM-Caller-ID-Num X-Asterisk-VM-Caller-ID-Name X-Asterisk-VM-Duration "
              "X-Asterisk-VM-Category X-Asterisk-VM-Message-Type X-Asterisk-VM-Orig-date "
              "X-Asterisk-VM-Orig-time X-Asterisk-VM-Message-ID X-Voxmail-Message-Id "
              "X-Voxmail-Idempotency-Key)])")


def uid_set(uids):
    """Compact UID set (ranges), as voxmail sends it."""
    out, i = [], 0
    while i < len(uids):
        j = i
        while j + 1 < len(uids) and uids[j + 1] == uids[j] + 1:
            j += 1
        out.append(str(uids[i]) if i == j else f"{uids[i]}:{uids[j]}")
        i = j + 1
    return ",".join(out)


class Api:
    def __init__(self, base, token):
        u = re.match(r"http://([^:/]+):(\d+)", base)
        self.host, self.port = u.group(1), int(u.group(2))
        self.token = token
        self.conn = None

    def request(self, method, path, body=None, headers=None):
        """One request on a kept-alive connection: (status, body bytes, seconds)."""
        h = {"Authorization": f"Bearer {self.token}"}
        h.update(headers or {})
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
            t0 = now()
            try:
                self.conn.request(method, path, body=body, headers=h)
                r = self.conn.getresponse()
                data = r.read()
                return r.status, data, now() - t0
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise

    def json(self, method, path, **kw):
        st, data, _ = self.request(method, path, **kw)
        if st >= 300:
            raise RuntimeError(f"{method} {path}: {st} {data[:300]!r}")
        return json.loads(data) if data else None


# --- append ------------------------------------------------------------------------------------------

def cmd_append(a):
    audio = wav_pcm16(1.0)
    m = imap_login(a)
    base = int(time.time()) - 86400 * 30
    t0 = now()
    xs = []
    for k in range(a.start, a.start + a.count):
        orig = base + k * 60
        msg = asterisk_message(k, a.mailbox, a.context, orig, f"{orig}-{k:08x}", audio)
        t1 = now()
        typ, data = m.append("INBOX", None, None, msg)
        xs.append((now() - t1) * 1000)
        assert typ == "OK", (typ, data)
    dt = now() - t0
    if a.out:
        with open(a.out, "w") as f:
            json.dump(dict(stats(xs), bytes=len(msg)), f, indent=1)
    m.select("INBOX", readonly=True)
    n = len(owner_search(m, a.mailbox, a.context))
    m.logout()
    log(f"appended {a.count} voicemails ({len(msg)} bytes each) in {dt:.1f} s; "
        f"INBOX now holds {n} of {a.mailbox}@{a.context}")


# --- list ----------------------------------------------------------------------------------------------

def cmd_list(a):
    api = Api(a.base, a.token)
    box = f"{a.mailbox}@{a.context}"
    path = f"/v1/mailboxes/{box}/messages"
    res = {"runs": a.runs, "messages": None, "vox": {}, "peer": {}}

    def get_page(q):
        st, data, dt = api.request("GET", path + q)
        if st != 200:
            raise RuntimeError(f"GET {path}{q}: {st} {data[:300]!r}")
        return json.loads(data), dt, len(data)

    def whole(limit):
        """Every page of the listing: (seconds, requests, items, bytes)."""
        t, n, items, size, cursor = 0.0, 0, 0, 0, None
        while True:
            q = f"?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
            v, dt, ln = get_page(q)
            t += dt
            n += 1
            size += ln
            items += len(v["items"])
            cursor = v.get("next_cursor")
            if not cursor:
                return t, n, items, size

    # The first request after the start opens the pooled connection (connect + LOGIN).
    v, dt, ln = get_page("?limit=50")
    res["vox"]["cold"] = {"ms": dt * 1000, "bytes": ln}
    log(f"cold first page: {dt * 1000:.1f} ms, {len(v['items'])} items, {ln} bytes")
    for _ in range(a.warmup):
        get_page("?limit=50")

    def run(name, fn, runs):
        xs, extra = [], None
        for _ in range(runs):
            r = fn()
            xs.append(r[0] * 1000)
            extra = r[1:]
        res["vox"][name] = dict(stats(xs), extra=extra)
        log(f"voxmail {name}: p50 {pct(xs, 50):.1f} ms, p99 {pct(xs, 99):.1f} ms, {extra}")

    def first50():
        v, dt, ln = get_page("?limit=50")
        return dt, len(v["items"]), ln

    run("first50", first50, a.runs)
    run("whole500", lambda: whole(500), a.runs)
    res["messages"] = whole(500)[2]
    run("whole50", lambda: whole(50), max(3, a.runs // 5))

    # Peer: one kept-open imaplib session with INBOX selected, as voxmail keeps a pooled one.
    m = imap_login(a)
    typ, _ = m.select("INBOX", readonly=True)
    assert typ == "OK"

    def scan(first=None):
        t0 = now()
        m.noop()  # voxmail sends NOOP first on a reused connection (resync_next)
        uids = owner_search(m, a.mailbox, a.context)
        if first:
            uids = uids[:first]
        typ, data = m.uid("FETCH", uid_set(uids), LIST_ITEMS)
        assert typ == "OK"
        got = sum(1 for d in data if isinstance(d, tuple))
        return now() - t0, got, sum(len(d[1]) for d in data if isinstance(d, tuple))

    for _ in range(a.warmup):
        scan()

    def prun(name, fn, runs):
        xs, extra = [], None
        for _ in range(runs):
            r = fn()
            xs.append(r[0] * 1000)
            extra = r[1:]
        res["peer"][name] = dict(stats(xs), extra=extra)
        log(f"peer {name}: p50 {pct(xs, 50):.2f} ms, p99 {pct(xs, 99):.2f} ms, {extra}")

    prun("scan_all", scan, a.runs)
    prun("scan_first50", lambda: scan(50), a.runs)
    # A fresh session each time (connect, LOGIN, SELECT, SEARCH, FETCH, LOGOUT): what a
    # client without a kept connection pays.
    def fresh():
        t0 = now()
        c = imap_login(a)
        c.select("INBOX", readonly=True)
        uids = owner_search(c, a.mailbox, a.context)
        typ, data = c.uid("FETCH", uid_set(uids), LIST_ITEMS)
        c.logout()
        return now() - t0, sum(1 for d in data if isinstance(d, tuple))
    prun("fresh_scan_all", fresh, max(3, a.runs // 5))
    m.logout()
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)


# --- deposit ---------------------------------------------------------------------------------------------

def cmd_deposit(a):
    api = Api(a.base, a.token)
    body = wav_pcm16(1.0)
    xs = []
    for _ in range(a.runs):
        st, data, dt = api.request("POST", f"/v1/mailboxes/{a.mailbox}@{a.context}/messages",
                                   body=body, headers={"Content-Type": "audio/wav"})
        if st != 201:
            raise RuntimeError(f"deposit: {st} {data[:300]!r}")
        xs.append(dt * 1000)
    res = stats(xs)
    log(f"deposit into the mailbox: p50 {res['p50']:.1f} ms, p99 {res['p99']:.1f} ms")
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)


# --- mwi -----------------------------------------------------------------------------------------------

class Sse(threading.Thread):
    """Reads GET /v1/events?mailbox=…; puts (monotonic time the data line was read, type, data)."""

    def __init__(self, api, box):
        super().__init__(daemon=True)
        self.q = queue.Queue()
        self.conn = http.client.HTTPConnection(api.host, api.port, timeout=3600)
        self.conn.request("GET", f"/v1/events?mailbox={box}",
                          headers={"Authorization": f"Bearer {api.token}",
                                   "Accept": "text/event-stream"})
        self.resp = self.conn.getresponse()
        if self.resp.status != 200:
            raise RuntimeError(f"SSE: {self.resp.status} {self.resp.read()[:300]!r}")
        self.stopped = False

    def run(self):
        typ, data, t = None, None, None
        try:
            while not self.stopped:
                line = self.resp.readline()
                if not line:
                    break
                line = line.decode().rstrip("\r\n")
                if line.startswith("event:"):
                    typ = line[6:].strip()
                elif line.startswith("data:"):
                    t = now()
                    data = line[5:].strip()
                elif line == "":
                    if data is not None:
                        self.q.put((t, typ, data))
                    typ, data, t = None, None, None
        except Exception as e:  # noqa: BLE001 - the main thread sees the stream end
            if not self.stopped:
                self.q.put((now(), "error", str(e)))


class IdlePeer(threading.Thread):
    """A raw IMAP session in IDLE on INBOX; puts the monotonic time of each untagged FETCH."""

    def __init__(self, a):
        super().__init__(daemon=True)
        self.q = queue.Queue()
        self.s = socket.create_connection((a.imap_host, a.imap_port), timeout=3600)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.f = self.s.makefile("rb")
        self.f.readline()
        self.cmd(f'a1 LOGIN "{a.imap_user}" "{a.imap_password}"', "a1")
        self.cmd("a2 SELECT INBOX", "a2")
        self.s.sendall(b"a3 IDLE\r\n")
        line = self.f.readline()
        assert line.startswith(b"+"), line
        self.stopped = False

    def cmd(self, c, tag):
        self.s.sendall(c.encode() + b"\r\n")
        while True:
            line = self.f.readline()
            if not line:
                raise RuntimeError("IMAP connection closed")
            if line.startswith(tag.encode() + b" "):
                assert b" OK" in line, line
                return

    def run(self):
        try:
            while True:
                line = self.f.readline()
                t = now()
                if not line:
                    break
                if line.startswith(b"* ") and b" FETCH " in line:
                    self.q.put((t, line.decode(errors="replace").strip()))
        except OSError:
            pass

    def stop(self):
        try:
            self.s.sendall(b"DONE\r\na4 LOGOUT\r\n")
            time.sleep(0.05)
            self.s.close()
        except OSError:
            pass


def cmd_mwi(a):
    api = Api(a.base, a.token)
    box = f"{a.mailbox}@{a.context}"
    counts = api.json("GET", f"/v1/mailboxes/{box}/mwi")
    base = (counts["new"], counts["old"])
    log(f"{a.label}: counts before {base[0]} new / {base[1]} old")
    # The mail client: its own session, INBOX selected read-write.
    m = imap_login(a)
    typ, _ = m.select("INBOX")
    assert typ == "OK"
    uids = owner_search(m, a.mailbox, a.context, " UNSEEN")
    assert uids, "no unseen voicemail to toggle"
    uid = str(uids[0])
    sse = Sse(api, box)
    sse.start()
    peer = IdlePeer(a)
    peer.start()
    time.sleep(0.5)

    def drain(q):
        n = 0
        while True:
            try:
                q.get_nowait()
                n += 1
            except queue.Empty:
                return n

    def wait_event(want, deadline):
        """The first mailbox.changed with counts `want` before `deadline`; others are counted."""
        others = []
        while True:
            left = deadline - now()
            if left <= 0:
                return None, others
            try:
                t, typ, data = sse.q.get(timeout=left)
            except queue.Empty:
                return None, others
            if typ == "error":
                raise RuntimeError(f"SSE stream failed: {data}")
            try:
                v = json.loads(data)
            except ValueError:
                others.append(typ)
                continue
            c = v.get("counts") or {}
            if typ == "mailbox.changed" and (c.get("new"), c.get("old")) == want:
                return t, others
            others.append(f"{typ} {c.get('new')}/{c.get('old')}")

    def wait_fetch(deadline):
        left = deadline - now()
        try:
            return peer.q.get(timeout=max(0.0, left))[0]
        except queue.Empty:
            return None

    def change(seen):
        op = "+FLAGS" if seen else "-FLAGS"
        t_send = now()
        typ, _ = m.uid("STORE", uid, op, "(\\Seen)")
        t_ok = now()
        assert typ == "OK"
        return t_send, t_ok

    wait = a.timeout
    # Warm-up: the watcher must be in IDLE (or polling) before anything is timed.
    for seen in (True, False):
        drain(sse.q)
        drain(peer.q)
        change(seen)
        want = (base[0] - 1, base[1] + 1) if seen else base
        t, _ = wait_event(want, now() + max(wait, 15))
        if t is None:
            raise RuntimeError(f"{a.label}: warm-up change never reached SSE")
        wait_fetch(now() + 2)
        time.sleep(0.3)

    vox, idle, store, delta, neg, extra, lost, lost_peer = [], [], [], [], 0, [], 0, 0
    seen = False
    for i in range(a.changes):
        extra += [f"before change {i}: {drain(sse.q)} unmatched"] if not sse.q.empty() else []
        drain(peer.q)
        seen = not seen
        want = (base[0] - 1, base[1] + 1) if seen else base
        t_send, t_ok = change(seen)
        store.append((t_ok - t_send) * 1000)
        t_ev, others = wait_event(want, t_ok + wait)
        if others:
            extra.append(f"change {i}: {others}")
        if t_ev is None:
            lost += 1
            log(f"{a.label}: change {i} ({want}) not seen on SSE within {wait} s")
        else:
            vox.append((t_ev - t_ok) * 1000)
        t_f = wait_fetch(t_ok + 5)
        if t_f is None:
            lost_peer += 1
        else:
            d = (t_f - t_ok) * 1000
            if d < 0:
                neg += 1
            idle.append(d)
            if t_ev is not None:
                delta.append((t_ev - t_f) * 1000)
        time.sleep(random.uniform(a.gap_min, a.gap_max))
    # Leave it as found.
    if seen:
        change(False)
    time.sleep(0.5)
    sse.stopped = True
    peer.stop()
    m.logout()
    res = {"label": a.label, "changes": a.changes, "counts_before": base,
           "vox": dict(stats(vox), lost=lost), "peer": dict(stats(idle), lost=lost_peer,
                                                            before_ok=neg),
           "store_rtt": stats(store), "delta": stats(delta), "unmatched": extra, "timeout_s": wait,
           "gap_s": [a.gap_min, a.gap_max]}
    log(f"{a.label}: voxmail p50 {res['vox']['p50']} p99 {res['vox']['p99']} lost {lost}; "
        f"IDLE peer p50 {res['peer']['p50']} p99 {res['peer']['p99']} lost {lost_peer}; "
        f"unmatched events: {extra[:5]}")
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)


# --- report ----------------------------------------------------------------------------------------------

def f2(x, w=8, d=1):
    return f"{x:{w}.{d}f}" if x is not None else f"{'-':>{w}}"


def cmd_report(a):
    L = json.load(open(a.list_json))
    n = L["messages"]
    v, p = L["vox"], L["peer"]
    print()
    print(f"List latency, mailbox {a.box} holding {n} voicemails in INBOX (Asterisk format, "
          f"APPENDed), ms; {L['runs']} runs per row (whole listing at limit=50: "
          f"{v['whole50']['n']})")
    print(f"{'voxmail: GET /v1/mailboxes/' + a.box + '/messages':<46} | {'p50':>8} {'p99':>8} "
          f"{'max':>8} | requests  items")
    print("-" * 47 + "+" + "-" * 28 + "+" + "-" * 16)
    print(f"{'cold first page (pool empty: connect+LOGIN)':<46} | {f2(v['cold']['ms'])} "
          f"{'':>8} {'':>8} |")
    print(f"{'first page, ?limit=50':<46} | {f2(v['first50']['p50'])} {f2(v['first50']['p99'])} "
          f"{f2(v['first50']['max'])} | {1:>8} {v['first50']['extra'][0]:>6}")
    for k, lim in (("whole500", 500), ("whole50", 50)):
        e = v[k]["extra"]
        print(f"{'whole listing, ?limit=' + str(lim) + ' + cursors':<46} | {f2(v[k]['p50'])} "
              f"{f2(v[k]['p99'])} {f2(v[k]['max'])} | {e[0]:>8} {e[1]:>6}")
    print(f"{'peer: imaplib, one kept-open session:':<46} |")
    print(f"{'NOOP, UID SEARCH, UID FETCH headers of all':<46} | {f2(p['scan_all']['p50'], d=2)} "
          f"{f2(p['scan_all']['p99'], d=2)} {f2(p['scan_all']['max'], d=2)} | {'':>8} "
          f"{p['scan_all']['extra'][0]:>6}")
    print(f"{'NOOP, UID SEARCH, UID FETCH of the first 50':<46} | "
          f"{f2(p['scan_first50']['p50'], d=2)} {f2(p['scan_first50']['p99'], d=2)} "
          f"{f2(p['scan_first50']['max'], d=2)} | {'':>8} {p['scan_first50']['extra'][0]:>6}")
    print(f"{'new session: LOGIN, SELECT, SEARCH, FETCH all':<46} | "
          f"{f2(p['fresh_scan_all']['p50'], d=2)} {f2(p['fresh_scan_all']['p99'], d=2)} "
          f"{f2(p['fresh_scan_all']['max'], d=2)} | {'':>8} {p['fresh_scan_all']['extra'][0]:>6}")
    if a.deposit_json and os.path.exists(a.deposit_json):
        d = json.load(open(a.deposit_json))
        print(f"{'voxmail: POST a 1 s WAV into this mailbox':<46} | {f2(d['p50'])} {f2(d['p99'])} "
              f"{f2(d['max'])} | {d['n']:>8}")
    if a.append_json and os.path.exists(a.append_json):
        d = json.load(open(a.append_json))
        print(f"{'peer: imaplib APPEND, one voicemail, ' + str(round(d['bytes'] / 1000, 1)) + ' kB':<46} | "
              f"{f2(d['p50'], d=2)} {f2(d['p99'], d=2)} {f2(d['max'], d=2)} | {d['n']:>8}")
    print()
    rows = [json.load(open(x)) for x in a.mwi_json if os.path.exists(x)]
    if rows:
        c = rows[0]["changes"]
        print(f"Mail client STORE \\Seen (tagged OK) -> notification, ms; {c} changes per row")
        print(f"{'':<26} | {'voxmail: SSE mailbox.changed':<35} | "
              f"{'peer: IDLE session, * FETCH':<35} | {'vox - peer':<15} | STORE")
        print(f"{'case':<26} | {'p50':>8} {'p99':>8} {'max':>8} {'lost':>7} | {'p50':>8} "
              f"{'p99':>8} {'max':>8} {'lost':>7} | {'p50':>7} {'p99':>7} | {'p50':>5}")
        print("-" * 27 + "+" + "-" * 37 + "+" + "-" * 37 + "+" + "-" * 17 + "+" + "-" * 6)
        for r in rows:
            vx, pe = r["vox"], r["peer"]
            dl = r["delta"]
            print(f"{r['label']:<26} | {f2(vx['p50'])} {f2(vx['p99'])} {f2(vx['max'])} "
                  f"{str(vx['lost']) + '/' + str(r['changes']):>7} | {f2(pe['p50'])} "
                  f"{f2(pe['p99'])} {f2(pe['max'])} "
                  f"{str(pe['lost']) + '/' + str(r['changes']):>7} | "
                  f"{f2(dl['p50'], w=7)} {f2(dl['p99'], w=7)} | "
                  f"{f2(r['store_rtt']['p50'], w=5, d=2)}")
        for r in rows:
            notes = []
            if r["peer"]["before_ok"]:
                notes.append(f"IDLE FETCH before the STORE's OK {r['peer']['before_ok']}× "
                             f"(negative samples)")
            if r["unmatched"]:
                notes.append(f"unmatched SSE events: {len(r['unmatched'])} ({r['unmatched'][:3]})")
            if notes:
                print(f"  {r['label']}: " + "; ".join(notes))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p, api=True):
        p.add_argument("--imap-host", default="127.0.0.1")
        p.add_argument("--imap-port", type=int)
        p.add_argument("--imap-user", default="alice")
        p.add_argument("--imap-password")
        p.add_argument("--mailbox", default="1234")
        p.add_argument("--context", default="bench")
        if api:
            p.add_argument("--base")
            p.add_argument("--token")
        p.add_argument("--out")

    p = sub.add_parser("append")
    common(p, api=False)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--start", type=int, default=0)
    p = sub.add_parser("list")
    common(p)
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--warmup", type=int, default=3)
    p = sub.add_parser("deposit")
    common(p)
    p.add_argument("--runs", type=int, default=10)
    p = sub.add_parser("mwi")
    common(p)
    p.add_argument("--changes", type=int, default=100)
    p.add_argument("--label", default="")
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--gap-min", type=float, default=0.05)
    p.add_argument("--gap-max", type=float, default=0.25)
    p = sub.add_parser("report")
    p.add_argument("--box")
    p.add_argument("--list-json")
    p.add_argument("--deposit-json")
    p.add_argument("--append-json")
    p.add_argument("--mwi-json", nargs="*", default=[])
    a = ap.parse_args()
    {"append": cmd_append, "list": cmd_list, "deposit": cmd_deposit, "mwi": cmd_mwi,
     "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    main()
