#!/usr/bin/env python3
"""Verify Standard Webhooks signatures with the reference `standardwebhooks` library.

Reads a JSON array from stdin: [{"secret": "whsec_...", "headers": {...}, "body": "<raw body>"}, ...]
Verifies each with `Webhook(secret).verify(body, headers)`; prints `verified N` and exits 0 when all
pass, otherwise prints one line per failure to stderr and exits 1. Used by the end-to-end tests as an
independent check of the host's signatures.
"""

import json
import sys

from standardwebhooks.webhooks import Webhook


def main() -> int:
    try:
        items = json.load(sys.stdin)
    except json.JSONDecodeError as e:
        print(f"stdin is not JSON: {e}", file=sys.stderr)
        return 2
    if not isinstance(items, list):
        print("stdin must be a JSON array of {secret, headers, body}", file=sys.stderr)
        return 2

    failures = []
    for i, item in enumerate(items):
        try:
            secret = item["secret"]
            headers = {str(k).lower(): str(v) for k, v in item["headers"].items()}
            body = item["body"]
            Webhook(secret).verify(body, headers)
        except Exception as e:  # noqa: BLE001 - report every kind of failure
            msg_id = item.get("headers", {}).get("webhook-id") if isinstance(item, dict) else None
            failures.append(f"webhook #{i} (webhook-id {msg_id!r}): {type(e).__name__}: {e}")

    if failures:
        for line in failures:
            print(f"FAILED {line}", file=sys.stderr)
        print(f"{len(failures)} of {len(items)} webhook(s) failed verification", file=sys.stderr)
        return 1
    print(f"verified {len(items)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
