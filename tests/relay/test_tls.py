"""TLS context of the relay (reference §6.2): suites, ALPN, no tickets, tls-unique.

The certificate chain is checked by the scenario tests through the client's fingerprint check."""

import asyncio
import ssl

from smprelay import tls

FX = "/work/shared/reference/upstream-fixtures/ed25519"


def test_context_offers_only_chacha20():
    ctx = tls.server_context(f"{FX}/server.crt", f"{FX}/ca.crt", f"{FX}/server.key")
    assert [c["name"] for c in ctx.get_ciphers()] == ["TLS_CHACHA20_POLY1305_SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305"]
    assert ctx.num_tickets == 0 and ctx.options & ssl.OP_NO_TICKET
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2


def test_loopback_handshake_alpn_and_tls_unique():
    ctx = tls.server_context(f"{FX}/server.crt", f"{FX}/ca.crt", f"{FX}/server.key")
    seen = {}

    async def scenario():
        async def on_conn(r, w):
            so = w.get_extra_info("ssl_object")
            seen["server"] = (tls.tls_unique(so), tls.negotiated_alpn(so))
            w.close()

        srv = await asyncio.start_server(on_conn, "127.0.0.1", 0, ssl=ctx)
        port = srv.sockets[0].getsockname()[1]
        for alpn in (["smp/1"], None):
            cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            cctx.check_hostname, cctx.verify_mode = False, ssl.CERT_NONE
            if alpn:
                cctx.set_alpn_protocols(alpn)
            r, w = await asyncio.open_connection("127.0.0.1", port, ssl=cctx)
            so = w.get_extra_info("ssl_object")
            client_unique = so.get_channel_binding("tls-unique")
            assert so.cipher()[0] == "TLS_CHACHA20_POLY1305_SHA256"
            await r.read()
            w.close()
            assert seen["server"] == (client_unique, alpn[0] if alpn else None)
            assert len(client_unique) == 32
        srv.close()
        await srv.wait_closed()

    asyncio.run(scenario())


def test_only_x448_x25519_key_exchange():
    ctx = tls.server_context(f"{FX}/server.crt", f"{FX}/ca.crt", f"{FX}/server.key")

    async def scenario():
        srv = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0, ssl=ctx)
        port = srv.sockets[0].getsockname()[1]
        for curve, ok in (("prime256v1", False), ("X25519", True), ("X448", True)):
            cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            cctx.check_hostname, cctx.verify_mode = False, ssl.CERT_NONE
            cctx.set_ecdh_curve(curve)  # the client offers only this group
            try:
                _, w = await asyncio.open_connection("127.0.0.1", port, ssl=cctx)
                w.close()
                connected = True
            except (ssl.SSLError, ConnectionError):
                connected = False
            assert connected is ok, curve
        srv.close()
        await srv.wait_closed()

    asyncio.run(scenario())
