"""The asyncio edge of one SMP connection: handshake, receive loop, sending, expiry.

``server.py`` accepts TLS connections and calls :func:`serve_client` for each. Everything
protocol-specific is in the pure modules; here we only read 16384-byte blocks, hand them to
``commands.process_block`` and write what it sends. Writes happen synchronously on the
event loop, so block order (and the block-encryption chain) always matches send order.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time

from . import commands, crypto
from . import encoding as e
from . import protocol as p
from .env import ServerEnv
from .handshake import (
    ENCRYPTED_BLOCK_VERSION,
    HandshakeError,
    ServerHello,
    check_client_hello,
    offered_range,
    parse_client_hello,
    service_error_response,
)
from .tls import negotiated_alpn, tls_unique
from .transport import BLOCK_SIZE, BlockCodec, BlockError, batch_blocks, parse_batch

log = logging.getLogger("smprelay.session")

HANDSHAKE_TIMEOUT = 120.0


async def serve_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, env: ServerEnv) -> None:
    """Run one client connection to its end; never raises for client misbehaviour."""
    client: commands.Client | None = None
    expiry: asyncio.Task[None] | None = None
    try:
        ssl_obj = writer.get_extra_info("ssl_object")
        if ssl_obj is None:
            raise ssl.SSLError("serve_client needs a TLS stream")
        session_id = tls_unique(ssl_obj)
        vrange = offered_range(negotiated_alpn(ssl_obj))
        hs_sk, hs_pk = crypto.x25519_keypair()
        signed = crypto.sign_exact_pubkey(env.server_private_key, crypto.x25519_spki(hs_pk))
        hello = ServerHello(vrange[0], vrange[1], session_id, env.cert_chain, signed)
        writer.write(e.pad(hello.encode(), BLOCK_SIZE))
        block = await asyncio.wait_for(reader.readexactly(BLOCK_SIZE), HANDSHAKE_TIMEOUT)
        try:
            ch = parse_client_hello(e.unpad(block))
        except e.ParseError as err:
            raise HandshakeError("HANDSHAKE PARSE", str(err)) from err
        check_client_hello(ch, env.key_hash, vrange)
        if ch.has_service:
            # We never request client certificates, so a service certificate cannot match
            # the TLS peer chain: upstream answers BAD_AUTH in a third block and closes.
            writer.write(e.pad(service_error_response("HANDSHAKE BAD_AUTH"), BLOCK_SIZE))
            await writer.drain()
            return
        dh = crypto.x25519(hs_sk, ch.dh_key) if ch.dh_key is not None else None
        if dh is not None and ch.version >= ENCRYPTED_BLOCK_VERSION and not ch.proxy_server:
            codec = BlockCodec.encrypted(session_id, dh)
        else:
            codec = BlockCodec()
        client = _make_client(env, writer, codec, p.Params(ch.version, session_id), hs_sk)
        client.sess_secret = dh
        if env.settings.inactive_ttl:
            expiry = asyncio.create_task(_expire_inactive(env, client, writer))
        await _receive_loop(env, client, reader, writer, codec)
    except HandshakeError as err:
        log.debug("handshake failed: %s", err)
    except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError, ssl.SSLError, crypto.CryptoError):
        pass
    except Exception:  # a bug must cost one connection, never the server
        log.exception("connection failed")
    finally:
        if expiry is not None:
            expiry.cancel()
        if client is not None:
            commands.client_gone(env, client)
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), 5)
        except (Exception, asyncio.CancelledError):
            pass


def _make_client(
    env: ServerEnv, writer: asyncio.StreamWriter, codec: BlockCodec, params: p.Params, hs_sk: bytes
) -> commands.Client:
    """A protocol client whose ``send`` is upstream's ``tSend``: each call's transmissions are
    packed into their own block(s) and encrypted at once (fixing block order and the
    encryption chain); separate calls never share a block (Server.hs ``send``/``sendMsg``).
    The bytes of all blocks made in one event-loop turn go to TLS in one write, so several
    blocks cost one system call. END/DELD events collected in a turn go together in one call,
    as upstream's ``pendingEvents`` do, so a resubscription storm costs few blocks."""
    client: commands.Client
    out: list[bytes] = []  # encrypted blocks not yet written
    events: list[bytes] = []  # END/DELD not yet packed
    scheduled = False
    loop = asyncio.get_running_loop()
    encode = codec.encode

    def put(ts: list[bytes]) -> None:
        payloads, too_large = batch_blocks(ts)
        if too_large:
            log.warning("dropped %d response(s) too large for a block", len(too_large))
        for b in payloads:
            out.append(encode(b))

    def flush() -> None:
        nonlocal scheduled
        scheduled = False
        if client.closed or writer.is_closing():
            out.clear()
            events.clear()
            return
        if events:
            # upstream prepends each event to the connection's pending list (``evt <|``)
            put(events[::-1])
            events.clear()
            client.snd_active = time.time()
        if out:
            writer.write(b"".join(out))
            out.clear()

    def schedule() -> None:
        nonlocal scheduled
        if not scheduled:
            scheduled = True
            loop.call_soon(flush)

    def send(ts: list[bytes]) -> None:
        if client.closed or writer.is_closing():
            return
        schedule()
        put(ts)
        client.snd_active = time.time()

    def send_event(t: bytes) -> None:
        if client.closed or writer.is_closing():
            return
        schedule()
        events.append(t)

    client = commands.Client(params, hs_sk, send, send_event=send_event)
    commands.hub_of(env).clients.add(client)
    return client


async def _receive_loop(
    env: ServerEnv,
    client: commands.Client,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    codec: BlockCodec,
) -> None:
    readexactly = reader.readexactly
    while True:
        block = await readexactly(BLOCK_SIZE)
        try:
            items = parse_batch(codec.decode(block))
        except BlockError:
            client.rcv_active = time.time()
            client.send([client.respond(b"", b"", b"ERR BLOCK")])
        else:
            commands.process_block(env, client, items)
        await writer.drain()


async def _expire_inactive(env: ServerEnv, client: commands.Client, writer: asyncio.StreamWriter) -> None:
    """Upstream ``disconnectTransport``: close idle connections that hold no subscriptions."""
    ttl = env.settings.inactive_ttl or 0
    interval = max(env.settings.inactive_check_interval, 0.05)
    while True:
        await asyncio.sleep(interval)
        if client.subs or client.ntf_subs:
            continue
        if max(client.rcv_active, client.snd_active) < time.time() - ttl:
            writer.close()
            return


async def run_housekeeping(env: ServerEnv, interval: float = 7200.0) -> None:
    """Expire old messages and notifications at start and then every ``interval`` seconds."""
    while True:
        commands.expire_messages(env)
        commands.expire_notifications(env)
        await asyncio.sleep(interval)
