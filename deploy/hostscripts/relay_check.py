"""Runs on a relay host (the relay venv's python): is the relay up, and is it the right identity?

For every relay port it waits until the port accepts connections, then completes a TLS and SMP
handshake with the relay's own client code, which checks that the certificate chain the relay
presents hashes to the expected fingerprint and validates (leaf signed by the CA). Prints one
JSON line; exit 0 only if every port passed.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from smprelay import client


async def check_port(fingerprint: str, port: int, deadline: float) -> str:
    address = f"smp://{fingerprint}@127.0.0.1:{port}"
    while True:
        try:
            c = await client.connect(address, timeout=5.0)
        except client.WrongFingerprint as e:
            return f"wrong identity: {e}"
        except (client.Unreachable, client.ConnectionClosed, client.HandshakeError, OSError) as e:
            if time.monotonic() > deadline:
                return f"not serving: {e}"
            await asyncio.sleep(0.3)
            continue
        except Exception as e:  # anything else: name it in the result instead of a bare traceback
            return f"check error: {type(e).__name__}: {e}"
        await c.close()
        return "ok"


async def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--fingerprint", required=True)
    p.add_argument("--port", type=int, action="append", required=True)
    p.add_argument("--timeout", type=float, default=30.0)
    a = p.parse_args()
    deadline = time.monotonic() + a.timeout
    results = {port: await check_port(a.fingerprint, port, deadline) for port in a.port}
    print(json.dumps({"ports": results}))
    bad = {p: r for p, r in results.items() if r != "ok"}
    if bad:
        print(f"relay check failed: {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
