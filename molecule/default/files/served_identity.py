"""Control-machine check: does the relay at HOST:PORT serve the identity of FINGERPRINT?

Connects with the relay package's own SMP client (TLS, then the certificate chain the server
presents is hashed and compared with the fingerprint, then the SMP handshake). Exit 0: it
matches; 3: the server presents another identity; 1: unreachable or handshake failed.
"""
import argparse
import asyncio
import json
import sys

from smprelay import client


async def check(fingerprint: str, host: str, port: int) -> str:
    try:
        c = await client.connect(f"smp://{fingerprint}@{host}:{port}", timeout=10.0)
    except client.WrongFingerprint as e:
        return f"wrong identity: {e}"
    except (client.SMPClientError, OSError) as e:
        return f"failed: {e}"
    await c.close()
    return "ok"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--fingerprint", required=True)
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, action="append", required=True)
    a = p.parse_args()
    results = {port: asyncio.run(check(a.fingerprint, a.host, port)) for port in a.port}
    print(json.dumps(results))
    if any(r.startswith("wrong identity") for r in results.values()):
        return 3
    return 0 if all(r == "ok" for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
