#!/usr/bin/env python3
"""Times subscription creation through the admin API of a `pipeline` binary, one client at a time.

Usage: scripts/create_subscriptions.py BINARY [COUNT] [STEP]
Starts BINARY on SQLite in a temporary directory (one configured chain whose node is unreachable:
nothing is ingested, only the admin path is measured), creates one endpoint and COUNT (10,000)
subscriptions one by one, and prints the mean time per create for each STEP (1,000) of them, so the
growth of one create's cost with the number already stored shows. Standard library only.
"""
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(conn, path, body):
    conn.request("POST", path, body=json.dumps(body),
                 headers={"Authorization": "Bearer bench", "Content-Type": "application/json"})
    answer = conn.getresponse()
    data = answer.read()
    if answer.status != 201:
        raise SystemExit(f"{path}: {answer.status} {data!r}")
    return json.loads(data)


def main():
    binary = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
    step = int(sys.argv[3]) if len(sys.argv) > 3 else 1_000
    work = tempfile.mkdtemp(prefix="pipeline-create-")
    with open(os.path.join(work, "c.toml"), "w") as f:
        f.write('[[chains]]\nname = "none"\nchain_id = 1\nws_urls = ["ws://127.0.0.1:9"]\n')
    admin = free_port()
    env = dict(os.environ, DATABASE_URL=f"sqlite://{work}/c.db",
               PIPELINE_ADMIN_ADDR=f"127.0.0.1:{admin}",
               PIPELINE_METRICS_ADDR=f"127.0.0.1:{free_port()}",
               PIPELINE_ADMIN_TOKEN="bench", RUST_LOG="error",
               PIPELINE_DELIVERY_ALLOWED_CIDRS="127.0.0.0/8")
    host = subprocess.Popen([binary, "serve", "--config", os.path.join(work, "c.toml")],
                            cwd=work, env=env, stdout=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", admin), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=60)
        endpoint = post(conn, "/v1/endpoints", {"url": "http://127.0.0.1:9/hook"})["id"]
        started = time.monotonic()
        block = started
        for i in range(count):
            address = "0x" + f"{i + 1:040x}"
            post(conn, "/v1/subscriptions",
                 {"endpoint_id": endpoint, "chain_id": 1, "addresses": [address]})
            if (i + 1) % step == 0:
                now = time.monotonic()
                print(f"{i + 1 - step:>6}–{i + 1:<6} {(now - block) / step * 1000:8.2f} ms/create",
                      flush=True)
                block = now
        print(f"total {count} creates: {time.monotonic() - started:.1f} s")
    finally:
        host.terminate()
        host.wait(timeout=30)


if __name__ == "__main__":
    main()
