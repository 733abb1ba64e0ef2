"""Parses a mail with Python's email package (a parser we did not write) and prints JSON.

usage: parse_mail.py FILE.eml ATTACHMENT_DIR
Attachments are written to ATTACHMENT_DIR under their filename.
"""
import email
import email.policy
import json
import os
import sys

raw = open(sys.argv[1], "rb").read()
msg = email.message_from_bytes(raw, policy=email.policy.default)
out = {
    "headers": {k.lower(): str(v) for k, v in msg.items()},
    "header_names": list(msg.keys()),
    "content_type": msg.get_content_type(),
    "defects": [str(d) for d in msg.defects],
    "parts": [],
}
for part in msg.walk():
    if part.is_multipart():
        out["defects"] += [str(d) for d in part.defects]
        continue
    info = {
        "content_type": part.get_content_type(),
        "params": dict(part.get_params() or []),
        "filename": part.get_filename(),
        "disposition": part.get_content_disposition(),
        "description": part.get("Content-Description"),
        "defects": [str(d) for d in part.defects],
    }
    if part.get_content_maintype() == "text":
        info["text"] = part.get_content()
    else:
        data = part.get_payload(decode=True)
        info["size"] = len(data)
        if info["filename"]:
            path = os.path.join(sys.argv[2], info["filename"])
            with open(path, "wb") as f:
                f.write(data)
            info["path"] = path
    out["defects"] += info["defects"]
    out["parts"].append(info)
print(json.dumps(out))
