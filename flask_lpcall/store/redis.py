"""Redis store: state and bus shared by every worker on every host (``LPCALL_STORE = "redis://…"``).

* Documents are JSON strings (``SET … PX``); ``update`` is optimistic (WATCH/MULTI,
  retried on conflict), keeping the key's remaining TTL unless a new one is given.
* Lists are Redis lists of JSON strings, sets are Redis sets.
* The bus is Redis pub/sub. Each store owns **one** listener thread (a greenlet under
  gevent) and one dedicated pub/sub connection, whatever the number of subscriptions;
  it dispatches every message to the callbacks registered in this process. When
  Redis goes away the listener reconnects with a backoff and re-subscribes to
  every channel that still has callbacks.
* Delivery (issue 20): a message published in this process reaches this process's own
  subscribers directly, in the publisher's greenlet, as with the memory store; it crosses Redis
  only for the other processes, tagged with this process's origin id so that the listener drops
  its own echo. A relayed call frame's wire text (a ``str``) crosses Redis as that text, never
  JSON-encoded again. On ``call:`` channels (one participant's frames) the PUBLISH is skipped
  altogether while Redis says nobody else listens (see :meth:`RedisStore.publish`).
* Per frame, the bus stays out of redis-py's per-reply layers: the listener and the writer take
  every reply from redis-py's hiredis reader, and when it has none, read the socket once through
  redis-py's parser (``_read_bus``, ``_replies``); pipelines are packed by hiredis. The connections
  speak RESP2 (``redisconn.pool_options``).
* Every connection failure surfaces as :class:`StoreUnavailableError` with a clear
  message; nothing is cached across an outage, so the store works again as soon
  as Redis is back. Works with and without gevent monkey-patching (it only uses
  ``socket``, ``threading`` and ``time``, which gevent patches).
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import threading
import time
import urllib.parse
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError, WatchError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

_pack_command: Callable[..., Any] | None
try:  # redis-py's own serializer wraps it in a few Python calls per command: a frame is one command
    import hiredis

    _pack_command = hiredis.pack_command
except ImportError:  # pragma: no cover - hiredis comes with the serve extra (setup.cfg); redis-py works without it
    _pack_command = None
try:
    from redis._parsers.hiredis import NOT_ENOUGH_DATA
except ImportError:  # pragma: no cover - redis-py without the hiredis parser module
    NOT_ENOUGH_DATA = False

from ..errors import ConfigError, StoreUnavailableError
from .base import SEQUENCE, Callback, Json, Resync, Store, Subscription, with_sequence
from .memory import json_copy
from .redisconn import pool_options

logger = logging.getLogger(__name__)

_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, OSError)
#: How long ``subscribe`` waits for Redis to confirm a new channel subscription.
SUBSCRIBE_TIMEOUT = 30.0  # generous: under heavy load the listener may be slow to see the confirmation
#: How many optimistic retries ``update`` makes under contention before giving up.
UPDATE_ATTEMPTS = 200
#: Channels whose PUBLISH may be skipped while only this process listens (one call participant's
#: frames, ``callmanager.channel``). Not chat: a conversation's subscriber catches up from its list,
#: and a publish skipped in the moment it subscribes elsewhere could miss both (issue 19).
LOCAL_PREFIXES = ("call:",)
#: Bus message kinds after the origin id (``ORIGIN_LEN`` characters): JSON, wire text, a subscriber's hello.
_JSON, _TEXT, _HELLO = "j", "t", "h"
ORIGIN_LEN = 12
#: Group commit (issue 20): when fewer than ``PUBLISH_BATCH`` PUBLISHes wait, the writer gathers for
#: ``PUBLISH_WINDOW`` seconds before sending them. One pipeline costs this worker, Redis and every
#: subscribing worker a few syscalls and wake-ups whatever its length; on 2 shared cores, with 10 call
#: pairs, batches of ~5 frames cost 97 µs of CPU per relayed frame and batches gathered for 0.5 ms 79 µs
#: (benchmarks/RESULTS.md). Under load the batch fills during the previous round trip and nobody waits.
PUBLISH_WINDOW = 0.0005
PUBLISH_BATCH = 32
#: How long a command sent through the writer (``_in_order``) waits for its reply.
COMMAND_TIMEOUT = 30.0
#: Keys per MGET of ``get_many``.
MGET_CHUNK = 500
#: ``lease``: renew the holder's lease, or take a free one (one round trip, atomic).
_LEASE = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if holder then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
#: ``append_sequenced`` in one step: KEYS = the list, the ``put`` keys, the ``touch`` keys; ARGV = ttl ms,
#: the item, how many put values, the put values, how many publications, then channel and message of each.
_APPEND_SEQUENCED = """
local ttl = ARGV[1]
local n = redis.call('RPUSH', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ttl)
local seq = '"sequence":' .. (n - 1)
local function fill(t) return (string.gsub(t, '"sequence":%SEQUENCE', seq)) end
local nput = tonumber(ARGV[3])
for i = 1, nput do redis.call('SET', KEYS[1 + i], fill(ARGV[3 + i]), 'PX', ttl) end
for i = 2 + nput, #KEYS do redis.call('PEXPIRE', KEYS[i], ttl) end
local j = 4 + nput
for i = 1, tonumber(ARGV[j]) do redis.call('PUBLISH', ARGV[j + 2 * i - 1], fill(ARGV[j + 2 * i])) end
return n
""".replace("SEQUENCE", str(SEQUENCE))
#: ``touch_owned``: KEYS = the document; ARGV = field, owner, the changes (a JSON object), ttl ms.
_TOUCH_OWNED = """
local raw = redis.call('GET', KEYS[1])
if not raw then return 'missing' end
local doc = cjson.decode(raw)
if doc[ARGV[1]] ~= ARGV[2] then return 'other' end
for k, v in pairs(cjson.decode(ARGV[3])) do doc[k] = v end
redis.call('SET', KEYS[1], cjson.encode(doc), 'PX', ARGV[4])
return 'ok'
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""


_process = {"pid": os.getpid()}  # os.getpid() is a system call: publish() asks on every frame
os.register_at_fork(after_in_child=lambda: _process.update(pid=os.getpid()))


def _dumps(value: Json) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _loads(raw: bytes | str | None) -> Json | None:
    return None if raw is None else json.loads(raw)


def _ms(ttl: float) -> int:
    return max(1, round(ttl * 1000))


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _packed(conn: Any, commands: list[tuple[str, ...]]) -> Any:
    """The commands in Redis's wire format, for ``send_packed_command``."""
    if _pack_command is not None:
        return [b"".join([_pack_command(command) for command in commands])]
    return conn.pack_commands(commands)


def _reader(conn: Any) -> Any:
    """redis-py's hiredis reader of ``conn`` (None with its pure-Python parser)."""
    reader = getattr(getattr(conn, "_parser", None), "_reader", None)
    return reader if hasattr(reader, "gets") else None


def _replies(conn: Any, n: int) -> list[Any]:
    """The next ``n`` replies on ``conn``, straight from its hiredis reader (one recv brings a pipeline's
    replies); through redis-py's ``read_response`` with its pure-Python parser. An error reply is returned as
    its exception, for the command it answers (the others' replies are good)."""
    reader = _reader(conn)
    out: list[Any] = []
    while len(out) < n:
        if reader is None:
            try:
                out.append(conn.read_response())
            except ResponseError as exc:
                out.append(exc)
            continue
        reply = reader.gets()
        if reply is NOT_ENOUGH_DATA or reply is False:
            conn._parser.read_from_socket()  # one recv into the reader; redis-py's errors and timeouts
        else:
            out.append(reply)
    return out


def _check_idle(conn: Any) -> None:
    """Raise ConnectionError if ``conn``, idle with no reply owed, is dead: Redis restarted and closed it (end
    of stream) or it holds bytes nobody asked for. Checked before a command that may not be retried goes out;
    a non-blocking recv, so a PUBLISH-only batch (retried on a fresh connection instead) does not pay it."""
    if conn.can_read(timeout=0):  # raises ConnectionError("Connection closed by server.") at end of stream
        raise RedisConnectionError("the writer's connection held unread data while idle")


def _take_replies(batch: list[_Publication], replies: list[Any]) -> None:
    """Give each publication its reply: a PUBLISH its receiver count, a command its reply, an error its own."""
    for p, reply in zip(batch, replies, strict=True):
        if isinstance(reply, Exception):
            p.error = reply
        elif p.command is None:
            p.count = int(reply)
        else:
            p.reply = reply


def _warn_without_hiredis() -> None:
    if _pack_command is None:  # the store is a layer below optional.py: the hint is spelled out here
        logger.warning("hiredis is not installed: the Redis store's bus parses and packs in Python, slower per "
                       "frame; pip install 'flask-lpcall[serve]'")


def redacted(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urllib.parse.urlunsplit(parts._replace(netloc=user + netloc))


class _Publication:
    """One command of the writer's ordered pipeline: a PUBLISH, or (``command``) a command whose caller waits for
    its ``reply`` (``done_event``)."""

    __slots__ = ("channel", "command", "count", "data", "done", "done_event", "error", "hellos", "local", "reply")

    def __init__(self, channel: str, data: str, local: bool = False, hellos: int = 0,
                 command: tuple[Any, ...] | None = None) -> None:
        self.channel, self.data = channel, data
        self.command, self.reply = command, None
        self.done_event: threading.Event | None = None
        self.done = False
        self.count = -1  # how many Redis connections received it (PUBLISH's reply)
        self.error: BaseException | None = None
        self.local = local  # a call channel with subscribers here: may become local (see publish)
        self.hellos = hellos  # the channel's hello count when it was published


class _RedisSubscription(Subscription):
    def __init__(self, store: RedisStore, channel: str, callback: Callback, resync: Resync | None = None) -> None:
        self._store = store
        self.channel = channel
        self.callback = callback
        self.resync = resync
        self._closed = False

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._store._unsubscribe(self)


class RedisStore(Store):
    """:class:`Store` on Redis (redis-py). ``url`` is any URL ``redis.from_url`` accepts."""

    def __init__(
        self,
        url: str,
        *,
        max_connections: int = 200,
        pool_timeout: float = 20.0,
        socket_timeout: float = 5.0,
        connect_timeout: float = 2.0,
    ) -> None:
        self.url = url
        self._where = redacted(url)
        _warn_without_hiredis()
        common: dict[str, Any] = {
            "socket_connect_timeout": connect_timeout,
            "socket_keepalive": True,
            # One quick retry re-opens a pooled connection that died with a Redis
            # restart; more would only delay the clear error while Redis is down.
            "retry": Retry(ExponentialBackoff(cap=0.05, base=0.01), 1),
            **pool_options(url),
        }
        try:
            self._pool = redis.BlockingConnectionPool.from_url(
                url, max_connections=max_connections, timeout=pool_timeout, socket_timeout=socket_timeout, **common
            )
            # The pub/sub connection blocks in reads for as long as it is idle.
            self._bus_pool = redis.ConnectionPool.from_url(url, socket_timeout=None, health_check_interval=0, **common)
        except ValueError as exc:
            raise ConfigError("LPCALL_STORE", f"is not a usable Redis URL: {exc}") from None
        self._redis = redis.Redis(connection_pool=self._pool)
        self._lease = self._redis.register_script(_LEASE)
        self._release = self._redis.register_script(_RELEASE)
        self._touch_owned = self._redis.register_script(_TOUCH_OWNED)
        # -- publishing (group commit on one connection, see publish) --
        self._pub_lock = threading.Lock()
        # publishers append, whoever sends takes everything (deque's append and popleft are atomic: no lock)
        self._pub_pending: deque[_Publication] = deque()
        self._pub_conn: Any = None
        self._pub_pid = os.getpid()
        self._pub_wake = threading.Event()  # wakes the writer (see publish)
        self._pub_failed = False  # the writer's last batch failed: publish waits for Redis again
        self._writer: threading.Thread | None = None
        self._writer_pid = 0  # the process whose writer runs (0: none); cheaper to test than is_alive()
        # -- bus state (guarded by _lock) --
        self._lock = threading.RLock()
        self._send_lock = threading.Lock()
        self._callbacks: dict[str, list[_RedisSubscription]] = {}
        self._pending: dict[str, threading.Event] = {}
        self._conn: Any = None  # the pub/sub connection while it is up
        self._connected = threading.Event()  # the pub/sub connection is up
        self._attempted = threading.Event()  # the listener tried to connect at least once
        self._wake = threading.Event()  # ends the reconnect backoff early
        self._listener: threading.Thread | None = None
        self._pid = os.getpid()
        self._origin = uuid.uuid4().hex[:ORIGIN_LEN]  # this process on the bus: its own echoes are dropped
        self._local_only: builtins.set[str] = set()  # call channels nobody else listens to (publish skips Redis)
        self._hellos: dict[str, int] = {}  # per channel: how many other subscribers said hello (see publish)
        self._resubscribed: builtins.set[str] = set()  # channels subscribed again after a reconnect (resync)
        self._closed = False
        self._down_since: float | None = None

    # -- errors ------------------------------------------------------------------
    def _unavailable(self, exc: BaseException) -> StoreUnavailableError:
        if "No connection available" in str(exc):  # the pool, not Redis: every connection busy for pool_timeout
            return StoreUnavailableError(
                f"the Redis store at {self._where} is overloaded: all {self._pool.max_connections} connections of "
                "this worker stayed busy; retry, or give the worker fewer sockets or Redis more capacity",
                code="STORE_UNAVAILABLE",
            )
        return StoreUnavailableError(
            f"the Redis store at {self._where} is unavailable ({exc.__class__.__name__}: {exc}); "
            "calls and messaging resume when it is reachable again",
            code="STORE_UNAVAILABLE",
        )

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except _UNAVAILABLE as exc:
            raise self._unavailable(exc) from exc

    # -- documents -----------------------------------------------------------------
    def get(self, key: str) -> Json | None:
        with self._guard():
            return _loads(self._redis.get(key))

    def set(self, key: str, value: Json, ttl: float | None = None) -> None:
        data = _dumps(value)
        with self._guard():
            self._redis.set(key, data, px=None if ttl is None else _ms(ttl))

    def delete(self, *keys: str) -> None:
        if keys:
            with self._guard():
                self._redis.delete(*keys)

    def update(self, key: str, fn: Callable[[Json | None], Json | None], ttl: float | None = None) -> Json | None:
        with self._guard(), self._redis.pipeline() as pipe:
            for _ in range(UPDATE_ATTEMPTS):
                try:
                    pipe.watch(key)  # type: ignore[no-untyped-call]  # redis-py's Pipeline.watch has no annotations
                    old = _loads(pipe.get(key))
                    new = fn(old)  # an exception here resets the pipeline (UNWATCH) and propagates
                    data = None if new is None else _dumps(new)
                    pipe.multi()
                    if data is None:
                        pipe.delete(key)
                    elif ttl is not None:
                        pipe.set(key, data, px=_ms(ttl))
                    else:
                        pipe.set(key, data, keepttl=True)
                    pipe.execute()
                    return None if data is None else json.loads(data)
                except WatchError:
                    continue  # someone else changed the key: recompute from the new value
        raise StoreUnavailableError(f"too much contention on {key!r}: update gave up after {UPDATE_ATTEMPTS} attempts")

    def touch_owned(self, key: str, field: str, owner: str, changes: dict[str, Json], ttl: float) -> str:
        with self._guard():
            status = self._touch_owned(keys=[key], args=[field, owner, _dumps(changes), _ms(ttl)])
        return status.decode() if isinstance(status, bytes) else str(status)

    def expire(self, key: str, ttl: float) -> None:
        with self._guard():
            self._redis.pexpire(key, _ms(ttl))

    def get_many(self, keys: list[str]) -> list[Json | None]:
        out: list[Json | None] = []
        with self._guard():
            for start in range(0, len(keys), MGET_CHUNK):
                out.extend(_loads(raw) for raw in self._redis.mget(keys[start:start + MGET_CHUNK]))
        return out

    def lease(self, name: str, owner: str, ttl: float) -> bool:
        with self._guard():
            return bool(self._lease(keys=[name], args=[owner, _ms(ttl)]))

    def release(self, name: str, owner: str) -> None:
        with self._guard():
            self._release(keys=[name], args=[owner])

    # -- lists -----------------------------------------------------------------------
    def append(self, key: str, item: Json, ttl: float | None = None) -> int:
        data = _dumps(item)
        with self._guard():
            if ttl is None:
                return int(self._redis.rpush(key, data))
            pipe = self._redis.pipeline()
            pipe.rpush(key, data)
            pipe.pexpire(key, _ms(ttl))
            length, _ = pipe.execute()
            return int(length)

    def append_sequenced(
        self,
        key: str,
        item: Json,
        ttl: float,
        *,
        put: Sequence[tuple[str, Json]] = (),
        touch: Sequence[str] = (),
        publish: Sequence[tuple[str, Json]] = (),
    ) -> int:
        """One Lua script: RPUSH, the puts, the TTLs and the PUBLISHes in one atomic step and one round trip
        (issue 20: a chat message was four round trips and two queued PUBLISHes; a PUBLISH lost to an
        outage after its RPUSH left the other workers' subscribers a message short until the next one)."""
        keys = [key, *(k for k, _ in put), *touch]
        args: list[Any] = [_ms(ttl), _dumps(item), len(put), *(_dumps(v) for _, v in put), len(publish)]
        for channel, message in publish:
            args += [channel, self._origin + _JSON + _dumps(message)]
        length = int(self._in_order(("EVAL", _APPEND_SEQUENCED, len(keys), *keys, *args)))
        for channel, message in publish:
            subs = self._callbacks.get(channel)
            if subs:
                self._deliver(channel, list(subs), with_sequence(message, length - 1))
        return length

    def _in_order(self, command: tuple[Any, ...]) -> Any:
        """Run ``command`` after every PUBLISH queued before it: it is one more command of the writer's ordered
        pipeline, so what this process published earlier reaches the other processes first. The caller waits
        for its reply, not for a lock held over a round trip: gevent hands a free lock to whoever asks first,
        and chat senders crossing workers waited up to 110 ms for it (benchmarks/RESULTS.md, issue 20).
        Not retried: it may have run."""
        item = _Publication("", "", command=command)
        if self._connected.is_set() and not self._pub_failed and self._writer_alive():
            item.done_event = threading.Event()
            self._pub_pending.append(item)
            self._pub_wake.set()
            if not item.done_event.wait(COMMAND_TIMEOUT):
                raise StoreUnavailableError(f"the Redis store at {self._where} did not answer within "
                                            f"{COMMAND_TIMEOUT:.0f}s")
        else:
            self._enqueue(item)  # Redis may be down: send it now, and raise the clear error if it is
        if isinstance(item.error, _UNAVAILABLE):
            raise self._unavailable(item.error) from item.error
        if item.error is not None:
            raise item.error
        return item.reply

    def _publisher(self) -> Any:
        """The writer's connection (call with ``_pub_lock`` held)."""
        if self._pub_conn is None or self._pub_pid != os.getpid():
            self._pub_conn, self._pub_pid = self._pool.make_connection(), os.getpid()  # type: ignore[no-untyped-call]
            self._pub_conn.connect()
        return self._pub_conn

    def range(self, key: str, start: int = 0, stop: int = -1) -> list[Json]:
        with self._guard():
            return [json.loads(raw) for raw in self._redis.lrange(key, start, stop)]

    # -- sets --------------------------------------------------------------------------
    def add(self, key: str, member: str, ttl: float | None = None) -> None:
        with self._guard():
            if ttl is None:
                self._redis.sadd(key, member)
                return
            pipe = self._redis.pipeline()
            pipe.sadd(key, member)
            pipe.pexpire(key, _ms(ttl))
            pipe.execute()

    def remove(self, key: str, member: str) -> None:
        with self._guard():
            self._redis.srem(key, member)  # Redis drops a set when its last member goes

    def members(self, key: str) -> builtins.set[str]:
        with self._guard():
            return {m.decode() if isinstance(m, bytes) else m for m in self._redis.smembers(key)}

    def keys(self, prefix: str = "") -> list[str]:
        with self._guard():
            return [
                k.decode() if isinstance(k, bytes) else k
                for k in self._redis.scan_iter(match=_glob_escape(prefix) + "*", count=500)
            ]

    # -- health --------------------------------------------------------------------------
    def ping(self) -> None:
        with self._guard():
            self._redis.ping()

    # -- bus ---------------------------------------------------------------------------------
    def publish(self, channel: str, message: Json) -> None:
        """Deliver to this process's subscribers directly, then PUBLISH for the other processes.

        The PUBLISH goes out on a dedicated connection with group commit: while one caller waits for
        Redis, the others queue up and the next one sends them all as one pipeline (signaling relays
        every frame through here, so this skips redis-py's per-command pool and retry machinery).

        On a ``call:`` channel with subscribers here, a PUBLISH that Redis says reached only this
        process's own connection marks the channel local: later messages skip Redis until another
        process subscribes, which it announces with a hello on the channel before it publishes
        anything (its frames and the hello arrive in order on our one pub/sub connection). The call
        state itself stays in Redis, so any worker can take a participant over.
        """
        subs = self._callbacks.get(channel)
        if subs:
            self._deliver(channel, list(subs), message)
            if channel in self._local_only:
                return
        text = type(message) is str
        local = bool(subs) and channel.startswith(LOCAL_PREFIXES)
        item = _Publication(channel, self._origin + (_TEXT + message if text else _JSON + _dumps(message)), local,
                            self._hellos.get(channel, 0) if local else 0)
        if self._connected.is_set() and not self._pub_failed and self._writer_alive():
            # Redis is up: the writer sends it with whatever else is queued, the caller goes on at once
            self._pub_pending.append(item)
            self._pub_wake.set()
            return
        self._send_publication(item)  # Redis may be down: wait, and raise the clear error if it is

    def _take(self) -> list[_Publication]:
        """Everything queued so far, in order; an append racing with it lands in this batch or the next."""
        pending, batch = self._pub_pending, []
        while pending:
            batch.append(pending.popleft())
        return batch

    def _writer_alive(self) -> bool:
        pid = _process["pid"]
        if self._writer_pid == pid:
            return True
        with self._lock:
            if self._closed:
                return False
            if self._writer_pid != pid:  # none yet, it died, or this is a forked child
                self._writer_pid = pid
                self._writer = threading.Thread(target=self._write, name="lpcall-redis-publish", daemon=True)
                self._writer.start()
        return True

    def _write(self) -> None:
        """The writer: every PUBLISH queued while the previous batch was on its way goes out as one
        pipeline (no caller waits for Redis; a frame is one more command in the next batch)."""
        try:
            self._write_batches()
        finally:
            self._writer_pid = 0

    def _write_batches(self) -> None:
        while not self._closed:
            self._pub_wake.wait()
            self._pub_wake.clear()
            if len(self._pub_pending) < PUBLISH_BATCH:
                time.sleep(PUBLISH_WINDOW)  # gevent: a timer; the publishing greenlets go on meanwhile
            with self._pub_lock:
                batch = self._take()
                if batch:
                    self._flush(batch)
            if batch and batch[0].error is not None and isinstance(batch[0].error, _UNAVAILABLE):
                logger.error("Redis store at %s: %d bus message(s) lost: %s", self._where, len(batch), batch[0].error)

    def _send_publication(self, item: _Publication) -> None:
        self._enqueue(item)
        if item.error is not None:
            raise self._unavailable(item.error) from item.error

    def _enqueue(self, item: _Publication) -> None:
        """Send ``item`` with the next group commit and wait for it; ``item.error`` tells how it went."""
        self._pub_pending.append(item)
        with self._pub_lock:
            if not item.done:
                batch = self._take()
                self._flush(batch)

    @staticmethod
    def _deliver(channel: str, subs: list[_RedisSubscription], message: Json) -> None:
        for sub in subs:
            try:
                sub.callback(message if type(message) is str else json_copy(message))
            except Exception:  # a broken subscriber must not break the others
                logger.exception("subscriber of %s failed", channel)

    def _flush(self, batch: list[_Publication]) -> None:
        error: BaseException | None = None
        commands = [p.command or ("PUBLISH", p.channel, p.data) for p in batch]
        has_command = any(p.command for p in batch)
        # a second try on a fresh connection survives a Redis restart; not once a command that may have run is sent
        for _ in range(2):
            sent = False
            try:
                conn = self._publisher()
                if has_command:
                    _check_idle(conn)
                sent = True
                conn.send_packed_command(_packed(conn, commands), check_health=False)
                _take_replies(batch, _replies(conn, len(batch)))
                error = None
                break
            except _UNAVAILABLE as exc:
                error = exc
                if self._pub_conn is not None:
                    self._pub_conn.disconnect()
                    self._pub_conn = None
                if has_command and sent:
                    break
            except Exception as exc:  # never leave a waiting caller behind (nor kill the writer)
                logger.exception("Redis store at %s: a pipeline failed", self._where)
                error = exc
                break
        self._pub_failed = error is not None and isinstance(error, _UNAVAILABLE)
        for p in batch:
            if error is not None:
                p.error = error
            p.done = True
            if p.done_event is not None:
                p.done_event.set()
            if p.local and p.count == 1:
                self._maybe_local(p)

    def _maybe_local(self, p: _Publication) -> None:
        """Only our own pub/sub connection received ``p``: its channel goes local, unless another process
        said hello since ``p`` was published (it subscribed after it) or the channel's subscribers left."""
        with self._lock:
            if (p.channel in self._callbacks and p.channel not in self._pending
                    and self._hellos.get(p.channel, 0) == p.hellos):
                self._local_only.add(p.channel)

    def subscribe(self, channel: str, callback: Callback, resync: Resync | None = None) -> Subscription:
        if self._closed:
            raise StoreUnavailableError("the Redis store is closed")
        self._ensure_listener()
        self._wait_bus()
        sub = _RedisSubscription(self, channel, callback, resync)
        with self._lock:
            subs = self._callbacks.setdefault(channel, [])
            subs.append(sub)
            if len(subs) > 1 and channel not in self._pending:
                return sub  # this process already listens on the channel
            confirmed = self._pending.setdefault(channel, threading.Event())
            if len(subs) == 1:
                try:
                    self._send("SUBSCRIBE", channel)
                except _UNAVAILABLE as exc:
                    self._drop(sub)
                    raise self._unavailable(exc) from exc
        if not confirmed.wait(SUBSCRIBE_TIMEOUT):
            self._drop(sub)
            raise StoreUnavailableError(f"the Redis store at {self._where} did not confirm the subscription to {channel!r}")
        return sub

    def _wait_bus(self) -> None:
        """Return once the pub/sub connection is up; raise StoreUnavailableError while Redis is down."""
        self._attempted.wait(SUBSCRIBE_TIMEOUT)
        if self._connected.is_set():
            return
        self.ping()  # raises the clear error while Redis is down
        self._wake.set()  # Redis is back: cut the listener's reconnect backoff short
        if not self._connected.wait(SUBSCRIBE_TIMEOUT):
            raise StoreUnavailableError(f"the Redis store at {self._where} is unavailable (no pub/sub connection)")

    def _drop(self, sub: _RedisSubscription) -> None:
        with self._lock:
            subs = self._callbacks.get(sub.channel, [])
            if sub in subs:
                subs.remove(sub)
            if not subs:
                self._callbacks.pop(sub.channel, None)
                self._pending.pop(sub.channel, None)
                self._local_only.discard(sub.channel)
                self._hellos.pop(sub.channel, None)

    def _unsubscribe(self, sub: _RedisSubscription) -> None:
        with self._lock:
            self._drop(sub)
            if sub.channel in self._callbacks:
                return
            try:
                self._send("UNSUBSCRIBE", sub.channel)
            except _UNAVAILABLE:
                pass  # the connection is gone anyway; the listener will not resubscribe it

    def _send(self, *args: str) -> None:
        conn = self._conn
        if conn is None:
            raise RedisConnectionError("no pub/sub connection")
        with self._send_lock:
            conn.send_command(*args, check_health=False)

    # -- the listener ----------------------------------------------------------------------
    def _ensure_listener(self) -> None:
        with self._lock:
            if self._pid != os.getpid():  # forked (e.g. gunicorn --preload): threads do not survive a fork
                self._pid = os.getpid()
                self._listener, self._conn = None, None
                self._connected.clear()
                self._callbacks.clear()
                self._pending.clear()
                self._local_only.clear()
                self._hellos.clear()
                self._resubscribed.clear()
                self._origin = uuid.uuid4().hex[:ORIGIN_LEN]
                self._bus_pool.reset()
            if self._listener is None or not self._listener.is_alive():
                self._listener = threading.Thread(target=self._listen, name="lpcall-redis-bus", daemon=True)
                self._listener.start()

    def _connect_bus(self) -> Any:
        conn = self._bus_pool.make_connection()
        conn.connect()  # type: ignore[no-untyped-call]  # redis-py leaves connect() unannotated
        with self._lock:
            self._local_only.clear()  # other processes may have subscribed while we were away
            channels = list(self._callbacks)
            for channel in channels:
                self._pending.setdefault(channel, threading.Event())
            # what was published while this connection was away is missed: resync once it is back
            self._resubscribed.update(channels)
            self._conn = conn
            if channels:
                self._send("SUBSCRIBE", *channels)
        return conn

    def _listen(self) -> None:
        backoff = 0.05
        while not self._closed:
            conn = None
            try:
                conn = self._connect_bus()
                if self._down_since is not None:
                    logger.warning("Redis store at %s is reachable again (down %.1fs)", self._where,
                                   time.monotonic() - self._down_since)
                self._down_since = None
                backoff = 0.05
                self._connected.set()
                self._attempted.set()
                self._read_bus(conn)
            except _UNAVAILABLE as exc:
                self._connected.clear()
                if self._down_since is None and not self._closed:
                    self._down_since = time.monotonic()
                    logger.error("Redis store at %s unavailable: %s; retrying", self._where, exc)
            except Exception:  # never let the listener die on a surprise
                self._connected.clear()
                if not self._closed:
                    logger.exception("Redis bus listener failed; reconnecting")
            finally:
                self._attempted.set()
                with self._lock:
                    if self._conn is conn:
                        self._conn = None
                if conn is not None:
                    conn.disconnect()
            if not self._closed:
                self._wake.wait(backoff)  # reconnect backoff (subscribe() wakes it when Redis is back)
                self._wake.clear()
                backoff = min(backoff * 2, 0.5)

    def _read_bus(self, conn: Any) -> None:
        """Handle the bus's messages until the store closes. Each wait is one recv (close() disconnects to end
        it; no ``can_read``: its two poll()s per wake-up cost more than a short batch's messages). With hiredis
        the messages come straight from redis-py's reader, one recv bringing a batch: redis-py's per-reply
        connection and parser layers cost more than a short message's delivery."""
        reader = _reader(conn)
        if reader is None:  # redis-py's pure-Python parser: read_response takes them one by one
            while not self._closed:
                self._handle(conn.read_response(disconnect_on_error=False, push_request=True))
            return
        read = conn._parser.read_from_socket
        while not self._closed:
            response = reader.gets()
            if type(response) is list:
                self._handle(response)
            elif response is NOT_ENOUGH_DATA or response is False:
                read()  # one recv into the reader, with redis-py's errors and timeouts
            elif isinstance(response, Exception):  # an error reply: redis-py raises it, and so do we
                raise response

    def _handle(self, response: Any) -> None:
        if type(response) is not list or len(response) < 3:
            return
        kind, channel = response[0], response[1]
        if type(channel) is bytes:
            channel = channel.decode()
        if kind == b"message" or kind == "message":  # bytes, unless the URL asks for decode_responses
            self._on_message(channel, response[2])
        elif kind == b"subscribe" or kind == "subscribe":
            self._on_subscribed(channel)

    def _on_subscribed(self, channel: str) -> None:
        """Redis confirmed a subscription: say hello on a local channel, wake its subscribe(), and let
        the subscribers of a channel listened to again catch up."""
        if channel.startswith(LOCAL_PREFIXES):
            # before subscribe() returns (and its caller publishes): whoever kept the channel local
            # sends through Redis again from this hello on
            hello = _Publication(channel, self._origin + _HELLO)
            self._enqueue(hello)
            if hello.error is not None:  # the listener reconnects, resubscribes, and says hello again
                raise RedisConnectionError(f"hello on {channel!r} failed: {hello.error}")
        with self._lock:
            event = self._pending.pop(channel, None)
            resync = channel in self._resubscribed
            self._resubscribed.discard(channel)
            subs = list(self._callbacks.get(channel, ())) if resync else []
        if event is not None:
            event.set()
        for sub in subs:  # listening again: the subscribers that can catch up do so now
            if sub.resync is not None:
                try:
                    sub.resync()
                except Exception:  # one subscriber must not stop the others (nor the listener)
                    logger.exception("resync of a subscriber of %s failed", channel)

    def _on_message(self, channel: str, raw: bytes | str) -> None:
        data = raw.decode() if type(raw) is bytes else str(raw)
        if data[:ORIGIN_LEN] == self._origin:
            return  # published here: its subscribers here already have it (publish)
        kind, body = data[ORIGIN_LEN:ORIGIN_LEN + 1], data[ORIGIN_LEN + 1:]
        if kind == _HELLO:
            with self._lock:
                self._hellos[channel] = self._hellos.get(channel, 0) + 1
                self._local_only.discard(channel)
            return
        message = body if kind == _TEXT else json.loads(body)
        subs = self._callbacks.get(channel)
        if subs:
            self._deliver(channel, list(subs), message)

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self._pub_wake.set()
        with self._lock:
            conn, self._conn = self._conn, None
            self._callbacks.clear()
        if conn is not None:
            conn.disconnect()
        if self._listener is not None and self._listener is not threading.current_thread():
            self._listener.join(timeout=3)
        with self._pub_lock:  # what the writer has not sent yet goes out now
            batch = self._take()
            if batch:
                self._flush(batch)
            if self._pub_conn is not None:
                self._pub_conn.disconnect()
        self._pool.disconnect()
        self._bus_pool.disconnect()
