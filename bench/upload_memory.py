#!/usr/bin/env python3
"""Opens N streaming uploads of one body at once, slowly, and samples a server's resident memory.

    upload_memory.py --port P --path /x --content-type T --body FILE --pids 1,2 [--token TOKEN]
                     [--clients 200] [--seconds 10] [--probe-path /y --probe-body FILE]

Every client sends its request head at once, then the body in equal pieces spread over
`--seconds`, so all N are in flight together; the RSS of the server (the sum over `--pids`, e.g.
nginx's master and workers) is read from /proc every 50 ms. Halfway through, one more request
(`--probe-path`, `--probe-body`: a small WAV deposit) is timed beside them. Prints one JSON line:
baseline and peak RSS (MiB), the statuses of the N answers, the probe's status and time.
"""
import argparse
import asyncio
import collections
import json
import time


def rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


async def upload(port, path, headers, body, seconds, pieces):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "Connection: close\r\n\r\n"
    writer.write(head.encode())
    step = -(-len(body) // pieces)
    status = None
    for i in range(0, len(body), step):
        writer.write(body[i:i + step])
        try:
            await writer.drain()
        except ConnectionError:
            break
        # A server that answered early (refused the upload) stops the sending.
        try:
            line = await asyncio.wait_for(reader.readline(), seconds / pieces)
            if line:
                status = int(line.split()[1])
                break
        except asyncio.TimeoutError:
            pass
    if status is None:
        line = await reader.readline()
        status = int(line.split()[1]) if line else 0
    writer.close()
    return status


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", required=True)
    ap.add_argument("--content-type", required=True)
    ap.add_argument("--body", required=True)
    ap.add_argument("--pids", required=True)
    ap.add_argument("--token", default="")
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--pieces", type=int, default=40)
    ap.add_argument("--probe-path", default="")
    ap.add_argument("--probe-body", default="")
    a = ap.parse_args()
    pids = [int(p) for p in a.pids.split(",")]
    body = open(a.body, "rb").read()
    headers = {"Content-Type": a.content_type}
    if a.token:
        headers["Authorization"] = f"Bearer {a.token}"
    baseline = rss_kib(pids)
    peak = baseline
    done = False

    async def sample():
        nonlocal peak
        while not done:
            peak = max(peak, rss_kib(pids))
            await asyncio.sleep(0.05)

    async def probe():
        await asyncio.sleep(a.seconds / 2)
        t0 = time.perf_counter()
        ph = {"Content-Type": "audio/wav", **({"Authorization": headers["Authorization"]} if a.token else {})}
        s = await upload(a.port, a.probe_path, ph, open(a.probe_body, "rb").read(), 0.01, 1)
        return s, (time.perf_counter() - t0) * 1000

    sampler = asyncio.create_task(sample())
    probing = asyncio.create_task(probe()) if a.probe_path else None
    t0 = time.perf_counter()
    statuses = await asyncio.gather(
        *(upload(a.port, a.path.replace("{i}", str(i)), headers, body, a.seconds, a.pieces)
          for i in range(a.clients)),
        return_exceptions=True)
    wall = time.perf_counter() - t0
    probed = await probing if probing else (None, None)
    done = True
    await sampler
    counts = collections.Counter(s if isinstance(s, int) else type(s).__name__ for s in statuses)
    print(json.dumps({
        "baseline_mib": round(baseline / 1024, 1),
        "peak_mib": round(peak / 1024, 1),
        "statuses": dict(counts),
        "wall_s": round(wall, 1),
        "probe_status": probed[0],
        "probe_ms": None if probed[1] is None else round(probed[1]),
    }))


asyncio.run(main())
