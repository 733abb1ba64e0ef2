"""A real SMTP server for the email tests (aiosmtpd from PyPI).

usage: server.py HOST PORT OUTDIR CONTROL

Every accepted message is written to OUTDIR as <n>.eml (the DATA bytes) plus <n>.json (envelope).
The CONTROL file, when it holds "451" or "550", makes the server refuse recipients with that code,
so tests can switch between transient and permanent failures while it runs.
"""
import asyncio
import json
import os
import sys
import time

from aiosmtpd.controller import Controller


class Handler:
    def __init__(self, outdir, control):
        self.outdir = outdir
        self.control = control
        self.n = 0

    def mode(self):
        try:
            with open(self.control) as f:
                return f.read().strip()
        except OSError:
            return ""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        mode = self.mode()
        if mode == "550":
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        if mode == "451":
            return "451 4.3.0 Temporary failure, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.n += 1
        name = "%d-%d-%d" % (time.time_ns(), os.getpid(), self.n)
        tmp = os.path.join(self.outdir, name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(envelope.original_content or envelope.content)
        with open(os.path.join(self.outdir, name + ".json"), "w") as f:
            json.dump({"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos}, f)
        os.rename(tmp, os.path.join(self.outdir, name + ".eml"))
        return "250 2.0.0 Message accepted for delivery"


def main():
    host, port, outdir, control = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    os.makedirs(outdir, exist_ok=True)
    controller = Controller(Handler(outdir, control), hostname=host, port=port)
    controller.start()
    print("READY", flush=True)
    try:
        asyncio.new_event_loop().run_forever()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
