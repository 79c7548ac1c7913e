"""What each SMP command does (upstream ``Server.hs`` ``receive``/``verify*``/``processCommand``).

Input: the raw transmissions of one received block, the connection's state and the
``ServerEnv``. Output: calls to ``Client.send`` (this connection and others: MSG pushes,
END, DELD, NMSG) with encoded transmissions. No I/O here: ``session.py`` provides ``send``.

Order matters and follows upstream: all transmissions of a block are parsed and verified
in order; parse/verification errors go out as their own batch; the verified commands are
then executed right to left (``foldrM``) and their responses sent in request order.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from . import crypto as c
from . import encoding as e
from . import protocol as p
from .env import ServerEnv
from .transport import BlockError, parse_batch
from .queue_store import ID_BYTES, LinkData, Message, NotifierCreds, QueueRec, QueueStore

# Dummy keys from upstream Server.hs: verification against them equalises AUTH timing.
_DUMMY_ED25519 = c.decode_public_key(base64.b64decode("MCowBQYDK2VwAyEA139Oqs4QgpqbAmB0o7rZf6T19ryl7E65k4AYe0kE3Qs="))
_DUMMY_X25519 = c.decode_public_key(
    base64.b64decode("MCowBQYDK2VuAyEA4JGSMYht18H4mas/jHeBwfcM7jLwNYJNOAhi2/g4RXg=")
).raw


@dataclass(slots=True)
class Sub:
    delivered: bytes | None = None  # id of the message delivered and not yet acknowledged
    get_mode: bool = False  # GET was used: SUB prohibited (upstream ProhibitSub)


@dataclass(eq=False)
class Client:
    """One connection's protocol state; ``send`` writes transmissions to it (batched)."""

    params: p.Params
    server_dh_sk: bytes  # the X25519 private key from our handshake, for authenticators
    send: Callable[[list[bytes]], None]
    subs: dict[bytes, Sub] = field(default_factory=dict)
    ntf_subs: set[bytes] = field(default_factory=set)
    rcv_active: float = field(default_factory=time.time)
    snd_active: float = field(default_factory=time.time)
    closed: bool = False
    sess_secret: bytes | None = None  # X25519(our handshake key, client's), for RFWD
    # END/DELD: upstream collects them per connection (``pendingEvents``) and sends them
    # together in one tPut; the session sets this to do the same per event-loop turn.
    send_event: Callable[[bytes], None] | None = None

    def respond(self, corr_id: bytes, entity_id: bytes, msg: bytes) -> bytes:
        return p.encode_response(self.params, corr_id, entity_id, msg)

    def event(self, entity_id: bytes, msg: bytes) -> None:
        """Queue an END or DELD for this connection (no correlation id)."""
        t = p.encode_response(self.params, b"", entity_id, msg)
        if self.send_event is not None:
            self.send_event(t)
        else:
            self.send([t])


@dataclass
class PendingNtf:
    nonce: bytes
    enc: bytes
    ts: int


@dataclass
class Hub:
    """Server-wide protocol runtime: who is subscribed where (kept in ``env.runtime``)."""

    subscribers: dict[bytes, Client] = field(default_factory=dict)
    ntf_subscribers: dict[bytes, Client] = field(default_factory=dict)
    over_quota: set[bytes] = field(default_factory=set)
    box_keys: dict[bytes, bytes] = field(default_factory=dict)
    ntfs: dict[bytes, deque[PendingNtf]] = field(default_factory=dict)
    clients: set[Client] = field(default_factory=set)


def hub_of(env: ServerEnv) -> Hub:
    h = env.runtime.get("hub")
    if h is None:
        h = env.runtime["hub"] = Hub()
    return h


@functools.lru_cache(maxsize=None)
def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def inc(env: ServerEnv, name: str, n: int = 1) -> None:
    """Increment a counter of ``stats.ServerStats`` by its upstream name (given in snake_case,
    passed on in camelCase, converted once) if the stats object has it."""
    s = env.stats
    if s is None:
        return
    f = getattr(s, "inc", None)
    if f is not None:
        f(_camel(name), n)
        return
    v = getattr(s, name, None)
    if isinstance(v, int):
        setattr(s, name, v + n)


def active(env: ServerEnv, rid: bytes, ntf: bool = False) -> None:
    """Upstream ``updatePeriodStats``: the queue was active today/this week/this month."""
    f = getattr(env.stats, "ntf_queue_active" if ntf else "msg_queue_active", None)
    if f is not None:
        f(rid)


def _now() -> int:
    return int(time.time())


# -- authorization ------------------------------------------------------------------------------
def _verify_with(client: Client, t: p.Transmission, key: c.PublicKey) -> bool:
    auth = t.auth
    n = len(auth)
    if n == 64 or n == 114:
        if key.alg == "ed25519" and n == 64:
            return c.ed25519_verify(key.raw, auth, t.authorized)
        if key.alg == "ed448" and n == 114:
            return c.ed448_verify(key.raw, auth, t.authorized)
        _dummy_verify(client, t)
        return False
    if n == 80:
        k = key.raw if key.alg == "x25519" else _DUMMY_X25519
        try:
            secret = c.x25519(client.server_dh_sk, k)
        except c.CryptoError:
            return False
        ok = c.cb_verify(secret, c.cb_nonce(t.corr_id), auth, t.authorized)
        return ok and key.alg == "x25519"
    return False


def _dummy_verify(client: Client, t: p.Transmission) -> None:
    n = len(t.auth)
    if n == 64:
        c.ed25519_verify(_DUMMY_ED25519.raw, t.auth, t.authorized)
    elif n == 114:
        c.ed448_verify(bytes(57), t.auth, t.authorized)
    elif n == 80:
        try:
            c.cb_verify(c.x25519(client.server_dh_sk, _DUMMY_X25519), c.cb_nonce(t.corr_id), t.auth, t.authorized)
        except c.CryptoError:
            pass


def _lookup(store: QueueStore, t: p.Transmission) -> QueueRec | None | bool:
    """The queue a command addresses; False when the command is not about a queue."""
    tag = t.cmd.tag
    if tag in p.RECIPIENT:
        return store.get_recipient(t.entity_id)
    if tag in p.SENDER:
        return store.get_sender(t.entity_id)
    if tag in p.SENDER_LINK:
        return store.get_link(t.entity_id)
    if tag in p.NOTIFIER:
        return store.get_notifier(t.entity_id)
    return False


def verify(env: ServerEnv, client: Client, t: p.Transmission) -> tuple[QueueRec | None, bytes | None]:
    """``verifyTransmission``: (queue, None) when verified, else (None, ERR text)."""
    q = _lookup(env.store, t)
    if q is None:
        _dummy_verify(client, t)
        return None, b"AUTH"
    if q is False:
        q = None
    if t.service_sig is not None:  # no service clients here: any service signature fails
        return None, b"SERVICE"
    cmd = t.cmd
    tag = cmd.tag
    if tag in ("SUBS", "NSUBS"):
        return None, b"SERVICE"
    if tag == "NEW":
        return (None, None) if _verify_with(client, t, cmd.key) else (None, b"AUTH")
    if tag in ("PING", "PRXY", "PFWD", "RFWD"):
        return None, None
    assert q is not None
    if tag in p.RECIPIENT:
        for der in q.recipient_keys:
            if _verify_with(client, t, c.decode_public_key(der)):
                return q, None
        return None, b"AUTH"
    if tag == "SEND":
        if q.sender_key is None:
            return (q, None) if not t.auth else (None, b"AUTH")
        return (q, None) if _verify_with(client, t, c.decode_public_key(q.sender_key)) else (None, b"AUTH")
    if tag in ("SKEY", "LKEY"):
        if q.queue_mode == "M" and (q.sender_key is None or q.sender_key == cmd.key.der):
            return (q, None) if _verify_with(client, t, cmd.key) else (None, b"AUTH")
        _dummy_verify(client, t)
        return None, b"AUTH"
    if tag == "LGET":
        return (q, None) if _is_contact(q) else (None, b"AUTH")
    if tag == "NSUB":
        if q.notifier is None:
            _dummy_verify(client, t)
            return None, b"AUTH"
        ok = _verify_with(client, t, c.decode_public_key(q.notifier.notifier_key))
        return (q, None) if ok else (None, b"AUTH")
    return None, b"INTERNAL"


def _is_contact(q: QueueRec) -> bool:
    if q.queue_mode == "M":
        return False
    if q.queue_mode == "C":
        return True
    return q.sender_key is None


def _is_secured_msg_queue(q: QueueRec) -> bool:
    return q.queue_mode != "C" and q.sender_key is not None


# -- the block --------------------------------------------------------------------------------------
def process_block(env: ServerEnv, client: Client, items: list[bytes]) -> None:
    """Parse, verify and execute one block's transmissions; send everything they produce."""
    params = client.params
    client.rcv_active = time.time()
    errors: list[bytes] = []
    verified: list[tuple[p.Transmission, QueueRec | None]] = []
    for raw in items:
        try:
            t = p.parse_transmission(params, raw)
        except p.ProtocolError as pe:
            errors.append(client.respond(pe.corr_id, pe.entity_id, p.err(pe.error)))
            continue
        q, er = verify(env, client, t)
        if er is not None:
            if er == b"AUTH":
                _inc_auth(env, t.cmd.tag)
            errors.append(client.respond(t.corr_id, t.entity_id, p.err(er)))
        else:
            verified.append((t, q))
    if len(verified) + len(errors) > 1 and not errors:
        _batch_stats(env, verified)
    # upstream: parse errors go in their own tPut; they usually leave before the responses
    if errors:
        client.send(errors)
    if not verified:
        return
    responses: list[bytes] = []
    msgs: list[bytes] = []
    for t, q in reversed(verified):  # foldrM: last transmission first
        r, m = execute(env, client, t, q)
        if r is not None:
            responses.append(r)
        if m is not None:
            msgs.append(m)
    responses.reverse()
    msgs.reverse()
    if not responses:
        return
    if not msgs:
        client.send(responses)
    elif len(responses) <= 4:
        client.send(responses + [msgs[0]])
        for m in msgs[1:]:
            client.send([m])
    else:
        client.send(responses)
        for m in msgs:
            client.send([m])


_BATCH_STATS = {"SUB": "q_sub_all_b", "DEL": "q_deleted_all_b", "NDEL": "ntf_deleted_b", "NSUB": "ntf_sub_b"}


def _batch_stats(env: ServerEnv, verified: list[tuple[p.Transmission, QueueRec | None]]) -> None:
    """Upstream ``updateBatchStats``: a block of several same-party commands counts once."""
    tags = {t.cmd.tag for t, _ in verified}
    if len(tags) == 1:
        name = _BATCH_STATS.get(tags.pop())
        if name:
            inc(env, name)


def _inc_auth(env: ServerEnv, tag: str) -> None:
    name = {"SEND": "msg_sent_auth", "SUB": "q_sub_auth", "NSUB": "ntf_sub_auth", "GET": "msg_get_auth"}.get(tag)
    if name:
        inc(env, name)


# -- execution ----------------------------------------------------------------------------------------
def execute(env: ServerEnv, client: Client, t: p.Transmission, q: QueueRec | None) -> tuple[bytes | None, bytes | None]:
    """``processCommand``: (response, extra MSG) as encoded transmissions."""
    cmd = t.cmd
    tag = cmd.tag
    corr, ent = t.corr_id, t.entity_id
    v = client.params.version

    def ok(msg: bytes = b"OK") -> tuple[bytes, None]:
        return client.respond(corr, ent, msg), None

    def er(code: bytes) -> tuple[bytes, None]:
        return client.respond(corr, ent, p.err(code)), None

    if tag == "PING":
        return client.respond(corr, b"", b"PONG"), None
    if tag == "NEW":
        return _create_queue(env, client, t), None
    if tag == "PRXY":
        return er(b"PROXY BASIC_AUTH")
    if tag == "PFWD":
        return er(b"PROXY NO_SESSION")
    if tag == "RFWD":
        return client.respond(corr, b"", forwarded(env, client, corr, cmd.body)), None
    if q is None:
        return er(b"INTERNAL")
    store = env.store
    hub = hub_of(env)
    now = _now()
    if tag != "SEND" and q.status.startswith("blocked"):
        return er(blocked_error(v, q.status))
    store.touch(q, now)
    if tag == "SEND":
        return _send(env, client, t, q, now)
    if tag == "ACK":
        return _ack(env, client, t, q)
    if tag == "SUB":
        return _subscribe(env, client, t, q)
    if tag == "GET":
        return _get(env, client, t, q)
    if tag in ("KEY", "SKEY"):
        if tag == "SKEY" and q.queue_mode != "M":
            return er(b"AUTH")
        return _secure(env, client, t, q)
    if tag == "LKEY":
        if q.queue_mode != "M":
            return er(b"AUTH")
        r, _ = _secure(env, client, t, q)
        if not r.endswith(b"OK"):
            return r, None
        return _get_link(client, t, q)
    if tag == "LGET":
        return _get_link(client, t, q)
    if tag == "RKEY":
        if q.queue_mode != "C":
            return er(b"AUTH")
        store.update_keys(q, [k.der for k in cmd.keys or []])
        return ok()
    if tag == "LSET":
        if _is_secured_msg_queue(q):
            return er(b"AUTH")
        if q.link is not None and q.link.link_id != cmd.link_id:
            return er(b"AUTH")
        if q.link is not None and q.link.fixed_data != cmd.fixed_data:
            return er(b"AUTH")
        other = store.get_link(cmd.link_id)
        if other is not None and other is not q:
            return er(b"AUTH")
        if q.link is None and store.id_taken(cmd.link_id):
            return er(b"AUTH")
        store.set_link(q, LinkData(cmd.link_id, cmd.fixed_data, cmd.user_data))
        return ok()
    if tag == "LDEL":
        store.delete_link(q)
        return ok()
    if tag == "NKEY":
        return _add_notifier(env, client, t, q)
    if tag == "NDEL":
        if q.notifier is not None:
            nid = q.notifier.notifier_id
            hub.ntfs.pop(nid, None)
            _end_ntf_sub(hub, nid, client)
            store.delete_notifier(q)
            inc(env, "ntf_deleted")
        return ok()
    if tag == "OFF":
        store.suspend(q)
        return ok()
    if tag == "DEL":
        _delete_queue(env, client, q)
        return ok()
    if tag == "NSUB":
        nid = q.notifier.notifier_id if q.notifier else ent
        prev = hub.ntf_subscribers.get(nid)
        if prev is not client:
            if prev is not None and not prev.closed:
                prev.ntf_subs.discard(nid)
                prev.event(nid, b"END")
            hub.ntf_subscribers[nid] = client
            client.ntf_subs.add(nid)
            inc(env, "ntf_sub")
        else:
            inc(env, "ntf_sub_duplicate")
        pending = hub.ntfs.pop(nid, None)
        if pending:
            client.send([client.respond(b"", nid, p.nmsg_msg(n.nonce, n.enc)) for n in pending])
        return ok(p.sok_msg(v))
    if tag == "QUE":
        return ok(b"INFO " + _queue_info(env, client, q).encode())
    return er(b"INTERNAL")


def blocked_error(v: int, status: str) -> bytes:
    """``ERR BLOCKED <info>`` as each version encodes it: AUTH before v12, no notice before v18."""
    if v < p.BLOCKED_ENTITY_VERSION:
        return b"AUTH"
    info = status.partition(",")[2] or "reason=spam"
    if v < p.CLIENT_NOTICES_VERSION:
        info = info.split(",notice=", 1)[0]
    return b"BLOCKED " + info.encode()


def _new_id(store: QueueStore) -> bytes:
    for _ in range(3):
        i = os.urandom(ID_BYTES)
        if not store.id_taken(i):
            return i
    raise RuntimeError("could not allocate a unique id")


def _create_queue(env: ServerEnv, client: Client, t: p.Transmission) -> bytes:
    cmd = t.cmd
    v = client.params.version
    settings = env.settings
    corr = t.corr_id

    def resp(msg: bytes) -> bytes:
        return client.respond(corr, t.entity_id, msg)

    if not settings.new_queues or (settings.create_password is not None and cmd.basic_auth != settings.create_password):
        return resp(p.err(b"AUTH"))
    store = env.store
    srv_sk, srv_pk = c.x25519_keypair()
    try:
        rcv_dh_secret = c.x25519(srv_sk, cmd.dh_key)
    except c.CryptoError:
        return resp(p.err(b"AUTH"))
    ntf: NotifierCreds | None = None
    ntf_pub = None
    if cmd.ntf_key is not None and cmd.ntf_dh_key is not None:
        nsk, ntf_pub = c.x25519_keypair()
        try:
            ntf_secret = c.x25519(nsk, cmd.ntf_dh_key)
        except c.CryptoError:
            return resp(p.err(b"AUTH"))
        ntf = NotifierCreds(b"", cmd.ntf_key.der, ntf_secret)
    req = cmd.queue_req
    link: LinkData | None = None
    client_ids = False
    try:
        if req is not None and req.sender_id is not None:
            client_ids = True
            if req.sender_id != c.sha3_384(corr)[:24]:
                return resp(p.err(b"CMD PROHIBITED"))
            snd_id = req.sender_id
            link_id = req.link_id if req.mode == "C" else _new_id(store)
            if store.id_taken(snd_id) or store.id_taken(link_id):
                return resp(p.err(b"AUTH"))
            link = LinkData(link_id, req.fixed_data or b"", req.user_data or b"")
        else:
            snd_id = _new_id(store)
        rid = _new_id(store)
        if ntf is not None:
            ntf.notifier_id = _new_id(store)
    except RuntimeError:
        return resp(p.err(b"INTERNAL"))
    if len({rid, snd_id} | ({link.link_id} if link else set()) | ({ntf.notifier_id} if ntf else set())) < (
        2 + (link is not None) + (ntf is not None)
    ):
        return resp(p.err(b"AUTH" if client_ids else b"INTERNAL"))
    day = _now() - _now() % 86400
    q = QueueRec(
        recipient_id=rid,
        recipient_keys=[cmd.key.der],
        rcv_dh_secret=rcv_dh_secret,
        sender_id=snd_id,
        queue_mode=req.mode if req else None,
        link=link,
        notifier=ntf,
        updated_at=day,
    )
    store.add(q)
    inc(env, "q_created")
    inc(env, "q_count")
    if ntf is not None:
        inc(env, "ntf_new_created")
    if cmd.sub_mode == "S":
        client.subs[rid] = Sub()
        _take_subscription(env, client, rid)
    return resp(
        p.ids_msg(
            v,
            rid,
            snd_id,
            c.x25519_spki(srv_pk),
            q.queue_mode,
            link.link_id if link else None,
            (ntf.notifier_id, c.x25519_spki(ntf_pub)) if ntf else None,
        )
    )


def _take_subscription(env: ServerEnv, client: Client, rid: bytes) -> None:
    """Make ``client`` the subscriber of ``rid``; the previous one gets END (upstream subQ)."""
    hub = hub_of(env)
    prev = hub.subscribers.get(rid)
    hub.subscribers[rid] = client
    if prev is not None and prev is not client and not prev.closed:
        if prev.subs.pop(rid, None) is not None:
            prev.event(rid, b"END")
            inc(env, "q_sub_end")
            inc(env, "q_sub_end_b")


def _end_ntf_sub(hub: Hub, nid: bytes, by: Client | None) -> None:
    """Notifier credentials removed or replaced: another subscribed connection gets DELD."""
    prev = hub.ntf_subscribers.pop(nid, None)
    if prev is not None:
        prev.ntf_subs.discard(nid)
        if prev is not by and not prev.closed:
            prev.event(nid, p.deld_msg(prev.params.version))


def _box_key(hub: Hub, q: QueueRec) -> bytes:
    k = hub.box_keys.get(q.recipient_id)
    if k is None:
        k = hub.box_keys[q.recipient_id] = c.hsalsa20(q.rcv_dh_secret)
    return k


def encrypt_msg(hub: Hub, q: QueueRec, m: Message) -> bytes:
    """``MSG`` message bytes: crypto_box(rcvDhSecret, nonce = msgId, padded body)."""
    padded = p.rcv_msg_body(m.ts, m.notification, m.body, m.quota)
    return p.msg_msg(m.msg_id, c.box_seal(_box_key(hub, q), c.cb_nonce(m.msg_id), padded))


def _subscribe(env: ServerEnv, client: Client, t: p.Transmission, q: QueueRec) -> tuple[bytes, bytes | None]:
    rid = q.recipient_id
    hub = hub_of(env)
    sub = client.subs.get(rid)
    if sub is None:
        sub = client.subs[rid] = Sub()
        _take_subscription(env, client, rid)
        has_sub = False
    elif sub.get_mode:
        inc(env, "q_sub_prohibited")
        return client.respond(t.corr_id, t.entity_id, p.err(b"CMD PROHIBITED")), None
    else:
        inc(env, "q_sub_duplicate")
        sub.delivered = None
        has_sub = True
        if hub.subscribers.get(rid) is not client:
            _take_subscription(env, client, rid)
    msgs = env.store.messages.get(rid)
    m = None
    if msgs:
        head = msgs[0]
        sub.delivered = head.msg_id
        if not has_sub:
            inc(env, "q_sub")
        m = client.respond(b"", rid, encrypt_msg(hub, q, head))
    return client.respond(t.corr_id, t.entity_id, p.sok_msg(client.params.version)), m


def _get(env: ServerEnv, client: Client, t: p.Transmission, q: QueueRec) -> tuple[bytes, None]:
    rid = q.recipient_id
    sub = client.subs.get(rid)
    dup = False
    if sub is None:
        sub = client.subs[rid] = Sub(get_mode=True)
    elif not sub.get_mode:
        inc(env, "msg_get_prohibited")
        return client.respond(t.corr_id, t.entity_id, p.err(b"CMD PROHIBITED")), None
    else:
        dup = sub.delivered is not None
        sub.delivered = None
    msgs = env.store.messages.get(rid)
    if msgs:
        head = msgs[0]
        inc(env, "msg_get_duplicate" if dup else "msg_get")
        sub.delivered = head.msg_id
        return client.respond(t.corr_id, t.entity_id, encrypt_msg(hub_of(env), q, head)), None
    inc(env, "msg_get_no_msg")
    return client.respond(t.corr_id, t.entity_id, b"OK"), None


def _ack(env: ServerEnv, client: Client, t: p.Transmission, q: QueueRec) -> tuple[bytes, None]:
    rid = q.recipient_id
    msg_id = t.cmd.msg_id
    sub = client.subs.get(rid)
    if sub is None or sub.delivered is None or (msg_id and msg_id != sub.delivered):
        return client.respond(t.corr_id, t.entity_id, p.err(b"NO_MSG")), None
    sub.delivered = None
    msgs = env.store.messages.get(rid)
    if msgs and (not msg_id or msgs[0].msg_id == msg_id):
        m = msgs.popleft()
        if not m.quota:
            inc(env, "msg_recv")
            if sub.get_mode:
                inc(env, "msg_recv_get")
            active(env, rid)
            if m.notification:
                inc(env, "msg_recv_ntf")
                active(env, rid, ntf=True)
            inc(env, "msg_count", -1)
        if not msgs:
            hub_of(env).over_quota.discard(rid)
            del env.store.messages[rid]  # idle queues keep no deque
    if sub.get_mode:
        return client.respond(t.corr_id, t.entity_id, b"OK"), None
    if msgs:
        head = msgs[0]
        sub.delivered = head.msg_id
        return client.respond(t.corr_id, t.entity_id, encrypt_msg(hub_of(env), q, head)), None
    return client.respond(t.corr_id, t.entity_id, b"OK"), None


def _secure(env: ServerEnv, client: Client, t: p.Transmission, q: QueueRec) -> tuple[bytes, None]:
    der = t.cmd.key.der
    if q.sender_key is not None:
        if q.sender_key != der:
            return client.respond(t.corr_id, t.entity_id, p.err(b"AUTH")), None
        return client.respond(t.corr_id, t.entity_id, b"OK"), None
    env.store.secure(q, der)
    inc(env, "q_secured")
    return client.respond(t.corr_id, t.entity_id, b"OK"), None


def _get_link(client: Client, t: p.Transmission, q: QueueRec) -> tuple[bytes, None]:
    if q.link is None or q.link.link_id != t.entity_id:
        return client.respond(t.corr_id, t.entity_id, p.err(b"AUTH")), None
    return client.respond(t.corr_id, t.entity_id, p.lnk_msg(q.sender_id, q.link.fixed_data, q.link.user_data)), None


def _add_notifier(env: ServerEnv, client: Client, t: p.Transmission, q: QueueRec) -> tuple[bytes, None]:
    hub = hub_of(env)
    sk, pk = c.x25519_keypair()
    try:
        secret = c.x25519(sk, t.cmd.dh_key)
        nid = _new_id(env.store)
    except (c.CryptoError, RuntimeError):
        return client.respond(t.corr_id, t.entity_id, p.err(b"INTERNAL")), None
    if q.notifier is not None:
        old = q.notifier.notifier_id
        hub.ntfs.pop(old, None)
        _end_ntf_sub(hub, old, client)
    env.store.add_notifier(q, NotifierCreds(nid, t.cmd.key.der, secret))
    inc(env, "ntf_created")
    return client.respond(t.corr_id, t.entity_id, p.nid_msg(nid, c.x25519_spki(pk))), None


def _delete_queue(env: ServerEnv, client: Client, q: QueueRec) -> None:
    hub = hub_of(env)
    rid = q.recipient_id
    n_msgs = sum(1 for m in env.store.messages.get(rid, ()) if not m.quota)
    env.store.delete(q)
    client.subs.pop(rid, None)
    hub.box_keys.pop(rid, None)
    hub.over_quota.discard(rid)
    sub_client = hub.subscribers.pop(rid, None)
    if sub_client is not None and sub_client is not client and not sub_client.closed:
        if sub_client.subs.pop(rid, None) is not None:
            sub_client.event(rid, p.deld_msg(sub_client.params.version))
            inc(env, "q_sub_end")
            inc(env, "q_sub_end_b")
    if q.notifier is not None:
        nid = q.notifier.notifier_id
        hub.ntfs.pop(nid, None)
        _end_ntf_sub(hub, nid, client)
    inc(env, "q_deleted_all")
    inc(env, "q_deleted_new" if q.sender_key is None else "q_deleted_secured")
    inc(env, "q_count", -1)
    if n_msgs:
        inc(env, "msg_count", -n_msgs)


def _send(env: ServerEnv, client: Client, t: p.Transmission, q: QueueRec, now: int) -> tuple[bytes, None]:
    cmd = t.cmd
    v = client.params.version

    def resp(msg: bytes) -> tuple[bytes, None]:
        return client.respond(t.corr_id, t.entity_id, msg), None

    if len(cmd.body) > p.max_message_length(v):
        inc(env, "msg_sent_large")
        return resp(p.err(b"LARGE_MSG"))
    if q.status == "off":
        inc(env, "msg_sent_auth")
        return resp(p.err(b"AUTH"))
    if q.status.startswith("blocked"):
        inc(env, "msg_sent_block")
        return resp(p.err(blocked_error(v, q.status)))
    store = env.store
    if q.link is not None and _is_secured_msg_queue(q):
        store.delete_link(q)
    hub = hub_of(env)
    rid = q.recipient_id
    msgs = store.queue_messages(rid)
    if env.settings.expire_messages_on_send and env.settings.message_ttl:
        _expire_queue(env, rid, msgs, now - env.settings.message_ttl)
    msg_id = os.urandom(ID_BYTES)
    empty = not msgs
    if rid in hub.over_quota and not empty:
        inc(env, "msg_sent_quota")
        return resp(p.err(b"QUOTA"))
    if len(msgs) >= env.settings.msg_queue_quota:
        msgs.append(Message(msg_id, now, b"", quota=True))
        hub.over_quota.add(rid)
        inc(env, "msg_sent_quota")
        return resp(p.err(b"QUOTA"))
    hub.over_quota.discard(rid)
    m = Message(msg_id, now, cmd.body, cmd.notification)
    msgs.append(m)
    if empty:
        sc = hub.subscribers.get(rid)
        if sc is not None and not sc.closed:
            sub = sc.subs.get(rid)
            if sub is not None and not sub.get_mode and sub.delivered is None:
                sub.delivered = msg_id
                sc.send([sc.respond(b"", rid, encrypt_msg(hub, q, m))])
    if cmd.notification and q.notifier is not None:
        _notify(env, hub, q.notifier, m)
        inc(env, "msg_sent_ntf")
        active(env, rid, ntf=True)
    inc(env, "msg_sent")
    active(env, rid)
    inc(env, "msg_count")
    return resp(b"OK")


def _notify(env: ServerEnv, hub: Hub, n: NotifierCreds, m: Message) -> None:
    nonce = os.urandom(24)
    meta = e.pad(e.ss(m.msg_id) + e.i64(m.ts), 128)
    enc = c.cb_encrypt(n.rcv_ntf_dh_secret, nonce, meta)
    sc = hub.ntf_subscribers.get(n.notifier_id)
    if sc is not None and not sc.closed:
        sc.send([sc.respond(b"", n.notifier_id, p.nmsg_msg(nonce, enc))])
        inc(env, "msg_ntfs")
    else:
        hub.ntfs.setdefault(n.notifier_id, deque()).append(PendingNtf(nonce, enc, m.ts))
    inc(env, "ntf_count")


def _queue_info(env: ServerEnv, client: Client, q: QueueRec) -> str:
    """``QUE`` answer: upstream's ``QueueInfo`` JSON (field order, names, standard base64 ids)."""
    msgs = env.store.messages.get(q.recipient_id) or ()
    sub = client.subs.get(q.recipient_id)
    info: dict[str, Any] = {"qiSnd": q.sender_key is not None, "qiNtf": q.notifier is not None}
    if sub is not None:
        qsub: dict[str, Any] = {"qSubThread": "prohibitSub" if sub.get_mode else "noSub"}
        if sub.delivered is not None:
            qsub["qDelivered"] = base64.b64encode(sub.delivered).decode()
        info["qiSub"] = qsub
    info["qiSize"] = len(msgs)
    if msgs:
        m = msgs[0]
        ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(m.ts))
        info["qiMsg"] = {
            "msgId": base64.b64encode(m.msg_id).decode(),
            "msgTs": ts,
            "msgType": "quota" if m.quota else "message",
        }
    return json.dumps(info, separators=(",", ":"))


# -- private message routing, destination side (upstream ``processForwardedCommand``) ------------
PADDED_PROXIED_T_LENGTH = 16226
FORWARDABLE = {"SEND", "SKEY", "LKEY", "LGET"}


def forwarded(env: ServerEnv, proxy: Client, corr_id: bytes, enc: bytes) -> bytes:
    """Answer ``RFWD``: decrypt both layers, run one sender command, encrypt the reply twice.

    Returns the message bytes (``RRES ...`` or ``ERR ...``) of the response to the proxy.
    """
    secret = proxy.sess_secret
    if secret is None:
        return p.err(b"PROXY BROKER TRANSPORT NO_AUTH")
    proxy_nonce = c.cb_nonce(corr_id)
    try:
        fwd = c.cb_decrypt(secret, proxy_nonce, enc)
    except c.CryptoError:
        return p.err(b"CRYPTO")
    try:
        fp = e.Parser(fwd)
        fwd_corr = fp.ss()
        fwd_version = fp.w16()
        fwd_key = c.decode_public_key(fp.ss())
        if fwd_key.alg != "x25519":
            raise e.ParseError("forwarding key must be X25519")
        et = fp.tail()
    except (e.ParseError, c.CryptoError):
        return p.err(b"CMD SYNTAX")
    try:
        client_secret = c.x25519(proxy.server_dh_sk, fwd_key.raw)
    except c.CryptoError:
        return p.err(b"CRYPTO")
    client_nonce = c.cb_nonce(fwd_corr)
    try:
        block = e.unpad(c.cb_decrypt(client_secret, client_nonce, et))
    except (c.CryptoError, e.ParseError):
        return p.err(b"CRYPTO")
    inner = Client(p.Params(fwd_version, proxy.params.session_id), proxy.server_dh_sk, proxy.send)
    inner.closed = True  # nothing is ever sent to the proxied client directly
    response = _forwarded_response(env, inner, block)
    try:
        reply = bytes((1,)) + e.large(response)
        r2 = c.cb_encrypt(client_secret, client_nonce[::-1], e.pad(reply, PADDED_PROXIED_T_LENGTH))
    except ValueError:
        return p.err(b"BLOCK")
    inc(env, "p_msg_fwds_recv")
    r3 = c.cb_encrypt(secret, proxy_nonce[::-1], e.ss(fwd_corr) + r2)
    return b"RRES " + r3


def _forwarded_response(env: ServerEnv, inner: Client, block: bytes) -> bytes:
    try:
        items = parse_batch(block)
    except BlockError:
        return inner.respond(b"", b"", p.err(b"BLOCK"))
    if len(items) != 1:
        return inner.respond(b"", b"", p.err(b"BLOCK"))
    try:
        t = p.parse_transmission(inner.params, items[0])
    except p.ProtocolError as pe:
        return inner.respond(pe.corr_id, pe.entity_id, p.err(pe.error))
    if t.cmd.tag not in FORWARDABLE:
        return inner.respond(t.corr_id, t.entity_id, p.err(b"CMD PROHIBITED"))
    q, er = verify(env, inner, t)
    if er is not None:
        return inner.respond(t.corr_id, t.entity_id, p.err(er))
    r, _ = execute(env, inner, t, q)
    return r if r is not None else inner.respond(t.corr_id, t.entity_id, p.err(b"INTERNAL"))


# -- housekeeping (called by the session edge) -----------------------------------------------------------
def _expire_queue(env: ServerEnv, rid: bytes, msgs: deque[Message], before: int) -> int:
    n = 0
    while msgs and msgs[0].ts < before:
        m = msgs.popleft()
        if not m.quota:
            n += 1
    if n:
        inc(env, "msg_expired", n)
        inc(env, "msg_count", -n)
    if not msgs:
        hub_of(env).over_quota.discard(rid)
    return n


def expire_messages(env: ServerEnv, now: int | None = None) -> int:
    """Delete messages older than ``[STORE_LOG] expire_messages_days``; returns how many."""
    ttl = env.settings.message_ttl
    if not ttl:
        return 0
    before = (now if now is not None else _now()) - ttl
    total = 0
    for rid, msgs in list(env.store.messages.items()):
        if msgs and msgs[0].ts < before:
            total += _expire_queue(env, rid, msgs, before)
    return total


def expire_notifications(env: ServerEnv, now: int | None = None) -> None:
    hub = hub_of(env)
    before = (now if now is not None else _now()) - env.settings.ntf_ttl
    for nid, ns in list(hub.ntfs.items()):
        while ns and ns[0].ts < before:
            ns.popleft()
        if not ns:
            del hub.ntfs[nid]


def client_gone(env: ServerEnv, client: Client) -> None:
    """Drop the connection's subscriptions (upstream ``clientDisconnected``)."""
    client.closed = True
    hub = hub_of(env)
    for rid in client.subs:
        if hub.subscribers.get(rid) is client:
            del hub.subscribers[rid]
    for nid in client.ntf_subs:
        if hub.ntf_subscribers.get(nid) is client:
            del hub.ntf_subscribers[nid]
    client.subs.clear()
    client.ntf_subs.clear()
    hub.clients.discard(client)
