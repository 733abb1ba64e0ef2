"""The timed part of bench/transcode.sh: runs each command REPEAT times, interleaved (one run of
every row, then the next round), so that noise on a shared machine spreads over all rows alike.

    python3 transcode_runs.py --repeat N --audio-secs S --row 'LABEL=COMMAND' ... \
        --inproc 'LABEL=COMMAND' ...

--row: a whole process per file; wall time is measured around the process (fork/exec to exit),
CPU time is its user + system time from wait4(). --inproc: a program that times N encodes
itself and prints `median_us=… min_us=…` (bench/opus_floor.{c,rs}); run in 5 interleaved rounds
of REPEAT/5 encodes each.
Prints one `RESULT kind label median_ms min_ms cpu_ms` line per row; commands must exit 0.
"""

import argparse
import os
import re
import shlex
import statistics
import subprocess
import sys
import time


def split(spec):
    label, _, cmd = spec.partition("=")
    return label, shlex.split(cmd)


def run_once(argv):
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    if p.returncode != 0:
        sys.exit(f"{shlex.join(argv)} failed ({p.returncode}): {err.strip()}")
    return wall * 1e3, (ru.ru_utime + ru.ru_stime) * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--row", action="append", default=[])
    ap.add_argument("--inproc", action="append", default=[])
    a = ap.parse_args()

    rows = [split(s) for s in a.row]
    walls = {label: [] for label, _ in rows}
    cpus = {label: [] for label, _ in rows}
    for _, argv in rows:  # warm-up: page cache, dynamic loader
        run_once(argv)
    for _ in range(a.repeat):
        for label, argv in rows:
            w, c = run_once(argv)
            walls[label].append(w)
            cpus[label].append(c)
    for label, _ in rows:
        print(f"RESULT process {label} {statistics.median(walls[label]):.2f} "
              f"{min(walls[label]):.2f} {statistics.median(cpus[label]):.2f}")

    # In-process rows: ROUNDS invocations of each program, interleaved, each timing
    # REPEAT/ROUNDS encodes itself; the median of their medians and the overall minimum.
    rounds = min(5, a.repeat)
    progs = [split(spec) for spec in a.inproc]
    meds = {label: [] for label, _ in progs}
    mins = {label: [] for label, _ in progs}
    extra = {}
    for _ in range(rounds):
        for label, argv in progs:
            out = subprocess.run(argv + [str(max(1, a.repeat // rounds))], check=True,
                                 capture_output=True, text=True).stdout
            meds[label].append(float(re.search(r"median_us=(\d+)", out).group(1)) / 1e3)
            mins[label].append(float(re.search(r"min_us=(\d+)", out).group(1)) / 1e3)
            extra[label] = (re.search(r"fnv=(\w+)", out).group(1),
                            re.search(r"bytes=(\d+)", out).group(1))
    for label, _ in progs:
        fnv, size = extra[label]
        print(f"RESULT inproc {label} {statistics.median(meds[label]):.2f} {min(mins[label]):.2f} - "
              f"fnv={fnv} bytes={size}")


if __name__ == "__main__":
    main()
