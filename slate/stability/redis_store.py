"""Stability state on a Redis server shared by every serving process: :class:`RedisStore`.

Layout: per member, a hash ``<prefix>{<member_id>}:s`` (field = title id, value = the packed
:class:`~slate.stability.TitleState`) and a counter ``<prefix>{<member_id>}:v`` (the member's
version). Both keys carry the member id as a *hash tag* (``{...}``), so on Redis Cluster they live
in the same slot and one script can touch both. A page costs one round trip to read (a Lua
script returning the version and the page's records) and one to write (a Lua script that checks
the version, writes the records, increments the version and resets the time to live, atomically).
"""

from __future__ import annotations

import math
import struct
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from slate.errors import InvalidProblemError, StoreError, StoreTimeoutError
from slate.stability.state import TitleState

__all__ = ["RedisStore"]

_FORMAT = b"\x01"  # first byte of every packed record: the record format
_PACK = struct.Struct("<dqqd?dqd?")  # shown_since .. draw_explored; the image id follows as UTF-8
_HEAD = len(_FORMAT) + _PACK.size

# (in chunks: Lua's unpack() takes a few thousand values at most)
_READ = """
local v = redis.call('GET', KEYS[2])
local out = {}
for i = 1, #ARGV, 4000 do
  local part = redis.call('HMGET', KEYS[1], unpack(ARGV, i, math.min(i + 3999, #ARGV)))
  for k = 1, #part do out[#out + 1] = part[k] end
end
return {v or false, out}
"""
# ARGV[1]: expected version (-1: blind write); ARGV[2]: time to live in ms (0: none); then field, value...
_WRITE = """
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
local expected = tonumber(ARGV[1])
if expected >= 0 and current ~= expected then return -1 end
for i = 3, #ARGV, 4000 do
  redis.call('HSET', KEYS[1], unpack(ARGV, i, math.min(i + 3999, #ARGV)))
end
current = current + 1
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('SET', KEYS[2], current, 'PX', ttl)
  redis.call('PEXPIRE', KEYS[1], ttl)
else
  redis.call('SET', KEYS[2], current)
  redis.call('PERSIST', KEYS[1])
end
return current
"""
# delete the fields whose value is still the stale one read by purge(); drop an emptied member
_PURGE = """
local removed = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    removed = removed + redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
if redis.call('HLEN', KEYS[1]) == 0 then redis.call('DEL', KEYS[2]) end
return removed
"""


def _encode(s: TitleState) -> bytes:
    return (
        _FORMAT
        + _PACK.pack(
            s.shown_since,
            s.sessions,
            s.last_session_id,
            s.updated_at,
            s.seen,
            s.draw_at,
            s.draw_sessions,
            s.draw_propensity,
            s.draw_explored,
        )
        + s.image_id.encode()
    )


def _decode(raw: bytes) -> TitleState:
    if raw[:1] != _FORMAT or len(raw) < _HEAD:
        raise StoreError(f"A state record in Redis has an unknown format (first byte {raw[:1]!r}).")
    v = _PACK.unpack_from(raw, 1)
    return TitleState(raw[_HEAD:].decode(), v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8])


class RedisStore:
    """Stability state on a Redis server (or cluster) shared by every serving process and host.

    Same semantics as :class:`~slate.stability.SQLiteStore`: :meth:`read` returns a member's records
    and version in one round trip, :meth:`write` commits only if the version is unchanged
    (compare-and-set, one round trip), ``put`` writes blindly. Every write resets the member's
    time to live to ``ttl_days`` (match :attr:`StabilityRules.state_ttl_days
    <slate.stability.StabilityRules.state_ttl_days>`), so Redis expires members not served for
    that long; :meth:`purge` also removes single stale records.

    A slow or unreachable server never blocks a page for long: each call gives up after
    ``timeout_ms`` and raises :class:`~slate.errors.StoreTimeoutError` (compose reports
    ``store_late`` and serves the page without state, or without saving it); a refused connection
    raises :class:`~slate.errors.StoreError` (``store_read_failed`` / ``store_write_failed``).
    Connections come from a thread-safe pool (reset after a fork), so one store serves every
    thread of a process. A timed-out write may or may not have been applied; the member's version
    tells the next page either way.

    Parameters
    ----------
    url : str, default "redis://127.0.0.1:6379/0"
        A redis-py URL (``redis://``, ``rediss://`` for TLS, ``unix://`` for a socket).
    ttl_days : float or None, default 30
        Time to live of a member's state after its last write (None: no expiry).
    timeout_ms : float, default 50
        Socket connect and read timeout of each call.
    prefix : str, default "slate:"
        Key prefix (one Redis can hold several independent stores).
    max_connections : int, default 64
        Size of the connection pool.
    cluster : bool, default False
        Connect with :class:`redis.cluster.RedisCluster` (the URL names any node).

    Attributes
    ----------
    conflicts_ : int
        Conditional writes refused because the member's version had moved on.
    timeouts_ : int
        Calls that timed out.
    errors_ : int
        Calls that failed otherwise (refused connection, server error).

    Examples
    --------
    Against a running server (``redis-server --port 6399``)::

        >>> from slate.stability import make_store, TitleState
        >>> store = make_store("redis://127.0.0.1:6399/0", ttl_days=30)  # doctest: +SKIP
        >>> states, version = store.read(7, ["T1"])  # doctest: +SKIP
        >>> store.write(7, {"T1": TitleState("T1-a", 0.0, 1, 1, 0.0, True)}, version)  # doctest: +SKIP
        True
    """

    name = "redis"

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        ttl_days: float | None = 30.0,
        timeout_ms: float = 50.0,
        prefix: str = "slate:",
        max_connections: int = 64,
        cluster: bool = False,
    ) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        if ttl_days is not None and (
            isinstance(ttl_days, bool) or not isinstance(ttl_days, (int, float)) or not 0 < ttl_days < math.inf
        ):
            raise InvalidProblemError(
                f"The 'ttl_days' parameter of RedisStore must be a number > 0 or None; got {ttl_days!r} instead."
            )
        if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, (int, float)) or not 0 < timeout_ms < math.inf:
            raise InvalidProblemError(
                f"The 'timeout_ms' parameter of RedisStore must be a number > 0; got {timeout_ms!r} instead."
            )
        if isinstance(max_connections, bool) or not isinstance(max_connections, int) or max_connections < 1:
            raise InvalidProblemError(
                f"The 'max_connections' parameter of RedisStore must be an integer >= 1; "
                f"got {max_connections!r} instead."
            )
        self.url = url
        self.ttl_days = ttl_days
        self.timeout_ms = float(timeout_ms)
        self.prefix = prefix
        self._ttl_ms = 0 if ttl_days is None else max(1, round(ttl_days * 86_400_000))
        self._errors = (redis.exceptions.RedisError, OSError)
        self._timeout_errors = (redis.exceptions.TimeoutError, TimeoutError)
        options: dict[str, Any] = dict(
            socket_timeout=self.timeout_ms / 1000.0,
            socket_connect_timeout=self.timeout_ms / 1000.0,
            # one retry, without waiting, of a connection found broken (e.g. the server restarted);
            # a timeout is not retried: the page's budget is spent
            retry=Retry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,)),
            max_connections=max_connections,
        )
        try:
            if cluster:
                from redis.cluster import RedisCluster

                self._client: Any = RedisCluster.from_url(url, **options)
            else:
                self._client = redis.Redis.from_url(url, **options)
        except (ValueError, TypeError) as err:
            raise InvalidProblemError(f"The Redis URL {url!r} is not valid: {err}.") from None
        except self._errors as err:  # a cluster connects at once
            raise StoreError(f"The Redis store {url} cannot be reached: {err}.") from None
        self._read = self._client.register_script(_READ)
        self._write = self._client.register_script(_WRITE)
        self._purge = self._client.register_script(_PURGE)
        self._lock = threading.Lock()
        self.conflicts_ = 0
        self.timeouts_ = 0
        self.errors_ = 0

    # ------------------------------------------------------------------ helpers
    def _keys(self, member_id: int) -> list[str]:
        tag = f"{self.prefix}{{{int(member_id)}}}"
        return [f"{tag}:s", f"{tag}:v"]

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except self._timeout_errors as err:
            with self._lock:
                self.timeouts_ += 1
            raise StoreTimeoutError(
                f"The Redis store {self.url} did not answer a {what} within {self.timeout_ms:g} ms."
            ) from err
        except self._errors as err:
            with self._lock:
                self.errors_ += 1
            raise StoreError(f"The Redis store {self.url}: {what} failed: {err}.") from err

    # ------------------------------------------------------------------ protocol
    def read(self, member_id: int, title_ids: Sequence[str]) -> tuple[dict[str, TitleState], int]:
        titles = list(title_ids)
        version, values = self._call("read", self._read, keys=self._keys(member_id), args=titles)
        states = {t: _decode(v) for t, v in zip(titles, values, strict=True) if v is not None}
        return states, 0 if version is None else int(version)

    def get(self, member_id: int, title_ids: Sequence[str]) -> dict[str, TitleState]:
        if len(title_ids) == 0:
            return {}
        return self.read(member_id, title_ids)[0]

    def _commit(self, member_id: int, states: Mapping[str, TitleState], version: int) -> bool:
        args: list[Any] = [version, self._ttl_ms]
        for title, s in states.items():
            args.append(title)
            args.append(_encode(s))
        result = self._call("write", self._write, keys=self._keys(member_id), args=args)
        return int(result) >= 0

    def write(self, member_id: int, states: Mapping[str, TitleState], version: int) -> bool:
        if int(version) < 0:
            raise InvalidProblemError(f"The 'version' parameter of write must be >= 0; got {version!r}.")
        ok = self._commit(member_id, states, int(version))
        if not ok:
            with self._lock:
                self.conflicts_ += 1
        return ok

    def put(self, member_id: int, states: Mapping[str, TitleState]) -> None:
        if states:
            self._commit(member_id, states, -1)

    def _scan(self) -> Any:
        return self._client.scan_iter(match=f"{self.prefix}{{*}}:s", count=1000)

    def purge(self, before: float) -> int:
        removed = 0
        for key in self._call("purge", lambda: list(self._scan())):
            key = key.decode() if isinstance(key, bytes) else key
            fields = self._call("purge", self._client.hgetall, key)
            stale: list[Any] = []
            for title, raw in fields.items():
                if _decode(raw).updated_at < before:
                    stale += [title, raw]
            if stale:
                keys = [key, key[:-2] + ":v"]
                removed += int(self._call("purge", self._purge, keys=keys, args=stale))
        return removed

    def __len__(self) -> int:
        return sum(int(self._call("count", self._client.hlen, key)) for key in self._call("count", lambda: list(self._scan())))

    def close(self) -> None:
        """Close the pool's connections (the store reconnects if used again)."""
        try:
            self._client.close()
        except self._errors:  # pragma: no cover - closing is best effort
            pass

    def __enter__(self) -> RedisStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
