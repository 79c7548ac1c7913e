"""The client's own checks, against an impostor server (a stand-in: the real relay never sends
these). It completes real TLS with the upstream fixture certificates and then sends crafted
server hellos; the client must refuse each with the right exception type, because ``verify``
reports them to operators as WRONG FINGERPRINT / HANDSHAKE ERROR.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from smprelay import client as smp

FIX = Path("/work/shared/reference/upstream-fixtures")


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def der(p: Path) -> bytes:
    return x509.load_pem_x509_certificate(p.read_bytes()).public_bytes(serialization.Encoding.DER)


def signed_key(key_path: Path, pub: bytes) -> bytes:
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    spki = smp.spki("x25519", pub)
    wrapper = b"\x30" + bytes((len(spki),)) + spki
    sig = key.sign(wrapper)
    alg = bytes.fromhex("300506032b6570" if len(sig) == 64 else "300506032b6571")
    body = wrapper + alg + b"\x03" + bytes((len(sig) + 1,)) + b"\x00" + sig
    return b"\x30" + (bytes((len(body),)) if len(body) < 128 else b"\x81" + bytes((len(body),))) + body


ED = FIX / "ed25519"
CHAIN = [der(ED / "server.crt"), der(ED / "ca.crt")]
OTHER_CHAIN = [der(FIX / "server.crt"), der(FIX / "ca.crt")]


class Impostor:
    """TLS with the Ed25519 fixture chain, then ``hello(session_id, client_x25519_pub)``."""

    def __init__(self, tmp: Path, make_hello) -> None:
        self.make_hello = make_hello
        self.client_hellos: list[bytes] = []
        chain = tmp / "chain.pem"
        chain.write_bytes((ED / "server.crt").read_bytes() + (ED / "ca.crt").read_bytes())
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(chain, ED / "server.key")
        self.ctx.set_alpn_protocols(["smp/1"])
        self.ctx.num_tickets = 0

    async def handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            sid = w.get_extra_info("ssl_object").get_channel_binding("tls-unique")
            hello = self.make_hello(sid)
            if hello is None:
                w.close()
                return
            w.write(smp.pad(hello, smp.BLOCK_SIZE))
            await w.drain()
            self.client_hellos.append(smp.unpad(await r.readexactly(smp.BLOCK_SIZE)))
            await r.read()  # keep open until the client goes
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, asyncio.CancelledError):
            pass
        finally:
            w.close()

    async def address(self, ca_der: bytes = CHAIN[1]) -> tuple[asyncio.Server, str]:
        srv = await asyncio.start_server(self.handle, "127.0.0.1", 0, ssl=self.ctx)
        port = srv.sockets[0].getsockname()[1]
        return srv, f"smp://{smp.fingerprint(ca_der)}@127.0.0.1:{port}"


def hello(sid: bytes, chain=CHAIN, key_path=ED / "server.key", vmin=6, vmax=18, pub=bytes(range(32))) -> bytes:
    out = smp.w16(vmin) + smp.w16(vmax) + smp.ss(sid)
    if chain is not None:
        out += bytes((len(chain),)) + b"".join(smp.large(c) for c in chain) + smp.large(signed_key(key_path, pub))
    return out


def test_valid_impostor_hello_is_accepted_and_client_hello_is_upstream_shaped(tmp_path):
    imp = Impostor(tmp_path, lambda sid: hello(sid))

    async def scenario():
        srv, addr = await imp.address()
        async with srv:
            c = await smp.connect(addr)
            assert c.version == 18 and c.server_key == bytes(range(32))
            await asyncio.sleep(0.2)
            await c.close()
        ch = imp.client_hellos[0]
        kh = hashlib.sha256(CHAIN[1]).digest()
        assert ch[:2] == b"\x00\x12" and ch[2:35] == smp.ss(kh)
        assert ch[35] == 44 and ch[36:48] == smp.SPKI_PREFIX["x25519"]  # SS(X25519 SPKI)
        assert ch[80:] == b"F0" and len(ch) == 82  # proxyServer = F, no service

    run(scenario())


@pytest.mark.parametrize(
    "name,make,exc,match",
    [
        ("session", lambda sid: hello(b"\x01" * len(sid)), smp.HandshakeError, "session"),
        ("signed by another key", lambda sid: hello(sid, key_path=FIX / "server.key"), smp.HandshakeError, "BAD_AUTH"),
        ("no common version", lambda sid: hello(sid, vmin=19, vmax=20), smp.HandshakeError, "no common version"),
        ("garbage", lambda sid: b"\x00\x06\x00\x12\xff", smp.HandshakeError, "parse"),
        ("closed", lambda sid: None, smp.HandshakeError, "closed"),
        ("one certificate", lambda sid: hello(sid, chain=CHAIN[:1]), smp.HandshakeError, "2 to 4"),
        ("five certificates", lambda sid: hello(sid, chain=CHAIN * 2 + CHAIN[:1]), smp.HandshakeError, "2 to 4"),
        ("leaf not issued by the CA", lambda sid: hello(sid, chain=[OTHER_CHAIN[0], CHAIN[1]]),
         smp.HandshakeError, "validate"),
    ],
)
def test_impostor_hellos_are_refused(tmp_path, name, make, exc, match):
    imp = Impostor(tmp_path, make)

    async def scenario():
        srv, addr = await imp.address()
        async with srv:
            with pytest.raises(exc, match=match):
                await smp.connect(addr, timeout=5)

    run(scenario())


def test_identity_from_another_ca_is_wrong_fingerprint(tmp_path):
    """The hello's chain is another operator's (valid in itself): WrongFingerprint, whatever
    the TLS layer presented; and a chain that validates but differs from TLS: HandshakeError."""

    async def scenario():
        imp = Impostor(tmp_path, lambda sid: hello(sid))
        srv, addr = await imp.address(ca_der=OTHER_CHAIN[1])
        async with srv:
            with pytest.raises(smp.WrongFingerprint):
                await smp.connect(addr, timeout=5)
        imp2 = Impostor(tmp_path, lambda sid: hello(sid, chain=OTHER_CHAIN, key_path=FIX / "server.key"))
        srv, addr = await imp2.address(ca_der=OTHER_CHAIN[1])
        async with srv:
            with pytest.raises(smp.HandshakeError, match="TLS certificate"):
                await smp.connect(addr, timeout=5)

    run(scenario())
