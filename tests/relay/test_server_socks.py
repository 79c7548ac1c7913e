"""The client's SOCKS5 path (``socks5h://``, names resolved by the proxy, as tor needs for .onion).

The SOCKS5 server here is a stand-in for tor's SocksPort (a real private Tor network is used
by the ``verify`` tests): a minimal RFC 1928 CONNECT proxy on loopback that maps one fake
.onion name to the real relay, records what it was asked for, and refuses anything else.
"""

from __future__ import annotations

import asyncio
import struct

import pytest

from smprelay import client as smp

ONION = "abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvw.onion"


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


class Socks5StandIn:
    """Minimal SOCKS5 CONNECT proxy (no auth) forwarding ONION to the relay port."""

    def __init__(self, relay_port: int) -> None:
        self.relay_port = relay_port
        self.requests: list[tuple[int, str, int]] = []  # (ATYP, host, port)

    async def handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            ver, n = await r.readexactly(2)
            await r.readexactly(n)
            w.write(b"\x05\x00")
            ver, cmd, _, atyp = await r.readexactly(4)
            if atyp == 3:
                host = (await r.readexactly((await r.readexactly(1))[0])).decode()
            elif atyp == 1:
                host = ".".join(map(str, await r.readexactly(4)))
            else:
                host = (await r.readexactly(16)).hex()
            (port,) = struct.unpack(">H", await r.readexactly(2))
            self.requests.append((atyp, host, port))
            if host != ONION:
                w.write(b"\x05\x04\x00\x01" + bytes(6))  # host unreachable
                await w.drain()
                w.close()
                return
            ur, uw = await asyncio.open_connection("127.0.0.1", self.relay_port)
            w.write(b"\x05\x00\x00\x01" + bytes(6))
            await w.drain()

            async def pipe(a: asyncio.StreamReader, b: asyncio.StreamWriter) -> None:
                try:
                    while data := await a.read(65536):
                        b.write(data)
                        await b.drain()
                finally:
                    b.close()

            await asyncio.gather(pipe(r, uw), pipe(ur, w), return_exceptions=True)
        except (asyncio.IncompleteReadError, ConnectionError):
            w.close()


def test_connect_via_socks5h_to_onion_host(relay):
    a = smp.parse_address(relay.address)
    addr = smp.SMPAddress(a.key_hash, ("public.invalid", ONION), relay.port, a.password)

    async def scenario():
        proxy = Socks5StandIn(relay.port)
        srv = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
        socks = f"socks5h://127.0.0.1:{srv.sockets[0].getsockname()[1]}"
        bare = socks[len("socks5h://"):]  # HOST:PORT is accepted too
        try:
            async with await smp.connect(addr, socks=socks) as c:
                # the onion host was chosen and handed to the proxy as a name (ATYP 3), not resolved
                assert proxy.requests == [(3, ONION, relay.port)]
                q = await c.create_queue()
                await c.send(q.snd_id, b"over socks")
                assert (await c.receive(q)).body == b"over socks"
            async with await smp.connect(addr, socks=bare) as c:
                await c.ping()
            with pytest.raises(ValueError, match="socks5h"):
                await smp.connect(addr, socks="http://" + bare)
            # a host the proxy cannot reach: Unreachable, with the proxy named
            other = smp.SMPAddress(a.key_hash, ("zzzz.onion",), relay.port, a.password)
            with pytest.raises(smp.Unreachable, match="SOCKS proxy"):
                await smp.connect(other, socks=socks, timeout=5)
        finally:
            srv.close()
            await srv.wait_closed()
        # no proxy listening there any more
        with pytest.raises(smp.Unreachable):
            await smp.connect(addr, socks=socks, timeout=5)

    run(scenario())


def test_unreachable_and_timeout_errors():
    async def scenario():
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        fp = "LcJUMfVhwD8yxjAiSaDzzGF3-kLG4Uh0Fl_ZIjrRwjI="
        with pytest.raises(smp.Unreachable, match="cannot connect"):
            await smp.connect(f"smp://{fp}@127.0.0.1:{port}", timeout=5)
        # a listener that never answers the TLS handshake: timeout, reported as Unreachable
        silent = await asyncio.start_server(lambda r, w: asyncio.sleep(30), "127.0.0.1", 0)
        sport = silent.sockets[0].getsockname()[1]
        with pytest.raises(smp.Unreachable, match="timed out"):
            await smp.connect(f"smp://{fp}@127.0.0.1:{sport}", timeout=1)
        silent.close()

    run(scenario())
