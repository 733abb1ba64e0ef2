"""A real SMTP server for the email tests (aiosmtpd from PyPI).

usage: server.py HOST PORT OUTDIR CONTROL [--tls starttls|implicit --cert PEM --key PEM]
                 [--auth USER:PASSWORD] [--auth-mechanisms LOGIN,...] [--auth-in-clear]

Every accepted message is written to OUTDIR as <n>.eml (the DATA bytes) plus <n>.json (envelope,
and how the session was secured: "tls" with the protocol version, "auth_user", "auth_mechanism").
The CONTROL file, when it holds "451" or "550", makes the server refuse recipients with that code,
so tests can switch between transient and permanent failures while it runs.

--tls starttls offers STARTTLS and refuses mail until it was used; --tls implicit speaks TLS from
the first byte (SMTPS). --auth requires AUTH with these credentials before MAIL (535 otherwise);
--auth-mechanisms limits the mechanisms offered; --auth-in-clear offers AUTH without TLS.
"""
import argparse
import asyncio
import json
import logging
import os
import ssl
import time
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


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
        tls = server.transport.get_extra_info("ssl_object")
        info = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "tls": tls.version() if tls is not None else None,
            "auth_user": session.auth_data if session.authenticated else None,
            "auth_mechanism": getattr(session, "voxmail_mechanism", None),
        }
        with open(os.path.join(self.outdir, name + ".json"), "w") as f:
            json.dump(info, f)
        os.rename(tmp, os.path.join(self.outdir, name + ".eml"))
        return "250 2.0.0 Message accepted for delivery"


class Authenticator:
    def __init__(self, user, password):
        self.user = user.encode()
        self.password = password.encode()

    def __call__(self, server, session, envelope, mechanism, auth_data):
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        if auth_data.login == self.user and auth_data.password == self.password:
            session.voxmail_mechanism = mechanism
            return AuthResult(success=True, auth_data=auth_data.login.decode())
        return AuthResult(success=False, handled=False)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("outdir")
    p.add_argument("control")
    p.add_argument("--tls", choices=["starttls", "implicit"])
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--auth")
    p.add_argument("--auth-mechanisms")
    p.add_argument("--auth-in-clear", action="store_true")
    a = p.parse_args()
    os.makedirs(a.outdir, exist_ok=True)
    # AUTH in clear is what --auth-in-clear asks for; aiosmtpd's own deprecation notices are noise.
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    logging.getLogger("mail.log").setLevel(logging.ERROR)

    kwargs = {}
    if a.tls:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(a.cert, a.key)
        if a.tls == "starttls":
            kwargs.update(tls_context=ctx, require_starttls=True)
        else:
            kwargs.update(ssl_context=ctx)
    if a.auth:
        user, password = a.auth.split(":", 1)
        kwargs.update(authenticator=Authenticator(user, password), auth_required=True)
        if a.auth_mechanisms:
            # aiosmtpd offers every mechanism it implements; hide the ones not asked for.
            wanted = set(a.auth_mechanisms.upper().split(","))
            kwargs["auth_exclude_mechanism"] = [m for m in ("PLAIN", "LOGIN") if m not in wanted]
        # On an implicit-TLS socket aiosmtpd cannot tell the session is encrypted; it is.
        kwargs["auth_require_tls"] = not (a.auth_in_clear or a.tls == "implicit")

    controller = Controller(Handler(a.outdir, a.control), hostname=a.host, port=a.port, **kwargs)
    controller.start()
    print("READY", flush=True)
    try:
        asyncio.new_event_loop().run_forever()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
