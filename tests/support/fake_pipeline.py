#!/usr/bin/env python3
"""A stand-in for the `pipeline` binary, used only by the support self-test of the Host harness.

Accepts `serve --config FILE`, records its arguments, environment and config in `fake-run.json`
(in its working directory), answers GET /healthz with 200 and everything else with a 404 error body
on PIPELINE_ADMIN_ADDR, and exits 0 on SIGTERM.
"""

import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server naming
        if self.path == "/healthz":
            body, status = b'{"status":"ok"}', 200
        else:
            body, status = b'{"error":{"code":"not_found","message":"fake host"}}', 404
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        print("fake host: " + fmt % args, flush=True)


def main() -> int:
    args = sys.argv[1:]
    if len(args) != 3 or args[0] != "serve" or args[1] != "--config":
        print(f"fake host: unexpected arguments {args}", file=sys.stderr)
        return 2
    with open(args[2], encoding="utf-8") as f:
        config = f.read()
    keys = [k for k in os.environ if k.startswith("PIPELINE_") or k in ("DATABASE_URL", "RUST_LOG")]
    record = {"args": args, "config": config, "env": {k: os.environ[k] for k in keys}}
    runs = []
    if os.path.exists("fake-run.json"):
        with open("fake-run.json", encoding="utf-8") as f:
            runs = json.load(f)
    runs.append(record)
    with open("fake-run.json", "w", encoding="utf-8") as f:
        json.dump(runs, f)

    host, port = os.environ["PIPELINE_ADMIN_ADDR"].rsplit(":", 1)
    server = ThreadingHTTPServer((host, int(port)), Handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"fake host: listening on {host}:{port}", flush=True)
    server.serve_forever()
    print("fake host: SIGTERM, exiting 0", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
