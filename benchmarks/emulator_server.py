"""The API emulator as a process of its own, for ``benchmarks/scale.py``.

Why a separate process: the benchmark measures the *operator's* CPU and memory from
``/proc/<pid>``; the emulator (``kmock.KubernetesEmulator``, started exactly as the demo
and the tests start it, via :func:`trustwire.demo.emulator.running_emulator`) and the driver
polling it must not be charged to the operator, nor share its event loop.

Protocol: the first line on stdout is ``{"url": ..., "pid": ...}``. Then one JSON command
per line on stdin, one JSON answer per line on stdout:

* ``{"cmd": "stats"}`` → request counts since start, by client (from the ``User-Agent``:
  ``operator`` = the operator, every list and watch included; ``bench`` = the driver;
  ``other``), kmock action (``FETCH``/``LIST``/``WATCH``/``CREATE``/``UPDATE``/
  ``DELETE``), resource plural (or the URL path of discovery requests) and subresource;
  plus the number of stored objects and the largest write body per resource (kmock's
  HTTP server, aiohttp, refuses bodies over 1 MiB with 413).
* ``{"cmd": "preload", "count": M, "namespaces": K, "size": B}`` → stores M Secrets of
  about B bytes each, *without* any trustwire label, spread over K namespaces
  ``unrelated-<k>``, directly into the emulator's object store (no HTTP round trips; the
  operator is not running yet, so nobody could watch them being created anyway).
* ``{"cmd": "quit"}`` or end of stdin → exit.

kmock is a test double, built for dozens of requests, not the ~10⁵ of a 1,000-identity
run. Three of its costs grow with the length of the run and would be measured instead of
the operator, so this process removes them — none changes a response any client sees:

1. **the request log.** kmock appends every request (body and aiohttp request included)
   to a log, and matches each new request against its reactions by scanning that log
   from the start (``request in reaction``) — quadratic in the number of requests. Here
   each request is counted (by ``User-Agent``) and dropped from the log as soon as it has
   been matched; requests not yet matched stay, so matching works exactly as before.
   Each reaction's own log of served requests is emptied too.
2. **object lookup.** kmock finds the object of a GET/PATCH/DELETE by scanning every
   stored object (O(objects) per request; a real API server's is O(1)). Here a request
   naming one object is answered by a dict lookup with the same key; lists and watches
   still scan, as before.
3. **object history.** kmock keeps every version of every object (a star hub's trust
   Secret is rewritten hundreds of times at 1,000 identities); each history is cut to its
   current version every five seconds.

Measured effect: see ``docs/benchmarks.md`` (section Scale, "The emulator").

``--label-selectors`` adds what kmock leaves out and every real API server does: LIST and
WATCH honour ``?labelSelector=`` (equality terms), so a label-filtered watch receives only
matching objects. Off by default — the benchmark reports kmock as it is and this variant
next to it.

``--plain-kmock`` (or ``TRUSTWIRE_BENCH_PLAIN_KMOCK=1``) keeps kmock exactly as it is and
counts by iterating its whole request log (``list(emulator)``) at each ``stats`` command —
to compare, and to check that the hooks change no count.
``TRUSTWIRE_BENCH_PROFILE_EMULATOR=<file>`` runs the emulator under cProfile;
``TRUSTWIRE_BENCH_TRACE_WRITES=<file>`` appends every write of the operator to a
JSON-lines file (path and body; of Secrets and ConfigMaps only the data keys).

``--proxy URL --ca FILE`` serves no emulator: it runs ``tests/cluster/proxy.py``'s
``ApiProxy`` in front of the real kube-apiserver at URL (its CA in FILE) and answers
``stats`` from the proxy's journal, with the same keys (the action from the method, the URL
and ``?watch``, as kmock derives it; the write size is the body re-encoded as compact JSON).
The journal is emptied as it is counted, so a long run does not keep every body. The
trace of writes then carries each answer's status too. ``preload`` is the emulator's only:
the driver stores unrelated Secrets on a real server through the API.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import kmock
from kmock._internal import apps as kmock_apps  # the two hooks below need kmock's internals

from trustwire.demo.emulator import running_emulator

if TYPE_CHECKING:
    from tests.cluster.proxy import ApiProxy, Recorded

WRITES = ("CREATE", "UPDATE", "DELETE")
#: (client, action, plural or URL path, subresource)
Key = tuple[str, str, str, str]


def classify(user_agent: str) -> str:
    if user_agent.startswith("trustwire-operator"):
        return "operator"
    if user_agent.startswith("trustwire-bench"):
        return "bench"
    return "other"


class Tally:
    """Request counts by :data:`Key`, the largest write body per resource, and the optional
    trace of the operator's writes."""

    def __init__(self) -> None:
        self.counts: Counter[Key] = Counter()
        self.largest: dict[str, int] = {}  # plural[/subresource] → largest write body in bytes
        trace = os.environ.get("TRUSTWIRE_BENCH_TRACE_WRITES")  # a path: log every operator write
        self.trace = open(trace, "a", encoding="utf-8") if trace else None  # noqa: SIM115

    def add(self, key: Key, size: int) -> None:
        self.counts[key] += 1
        if key[1] in WRITES:
            kind = f"{key[2]}/{key[3]}" if key[3] else key[2]
            self.largest[kind] = max(self.largest.get(kind, 0), size)

    def trace_write(self, key: Key, path: str, data: Any, status: int | None = None) -> None:
        if self.trace is None or key[0] != "operator" or key[1] not in WRITES:
            return
        line = {"t": round(time.monotonic(), 3), "source": key[0], "action": key[1], "path": path,
                "body": _summary(data), **({"status": status} if status is not None else {})}
        self.trace.write(json.dumps(line) + "\n")
        self.trace.flush()

    def snapshot(self, objects: int, counts: Counter[Key] | None = None) -> dict[str, Any]:
        counts = self.counts if counts is None else counts
        return {
            "counts": [[*key, n] for key, n in sorted(counts.items())],
            "objects": objects,
            "largest_write_bytes": dict(sorted(self.largest.items())),
        }


class Stats:
    """Counts kmock's requests into a :class:`Tally`; empties kmock's logs."""

    def __init__(self, emulator: Any) -> None:
        self.emulator = emulator
        self.tally = Tally()
        self.matched: set[int] = set()  # ids of logged requests that kmock has matched already

    @staticmethod
    def key(request: Any) -> Key:
        source = classify(str(request.headers.get("User-Agent", "")))
        action = request.action.value if request.action is not None else str(request.method.value)
        plural = request.resource.plural if request.resource is not None else None
        plural = plural or str(request.url.path)  # discovery requests name no resource
        return source, action, str(plural), str(request.subresource or "")

    def count(self, request: Any) -> None:
        key = self.key(request)
        self.tally.add(key, len(request.body or b""))
        self.tally.trace_write(key, str(request.url.path), request.data)

    def on_match(self, request: Any) -> None:
        """Called just before kmock matches ``request``: count it, drop what is matched."""
        self.count(request)
        self.matched.add(id(request))
        log: list[Any] = self.emulator._requests
        if len(log) > 1:
            log[:] = [r for r in log if r is request or id(r) not in self.matched]
            self.matched = {id(r) for r in log if id(r) in self.matched}

    def trim(self) -> None:
        for reaction in self.emulator._payloads:  # every reaction keeps the requests it served
            reaction._requests.clear()
        for obj in self.emulator.objects.values():
            history = obj.history
            keep = 2 if obj.deleted else 1  # a soft-deleted object still answers with its last state
            if len(history) > keep:
                del history[:-keep]

    def snapshot(self, *, plain: bool) -> dict[str, Any]:
        # plain kmock: count its whole request log, as iterating the emulator yields it
        counts = Counter(self.key(r) for r in list(self.emulator)) if plain else None
        return self.tally.snapshot(len(self.emulator.objects), counts)


def proxy_key(record: Recorded) -> Key:
    """A proxied request's :data:`Key`, derived from method and URL as kmock derives its own."""
    source = classify(record.user_agent)
    parts = [p for p in record.path.split("/") if p]
    rest = parts[2:] if parts[:1] == ["api"] else parts[3:] if parts[:1] == ["apis"] else []
    if not rest:  # discovery, /version, /healthz: no resource
        return source, record.method, record.path, ""
    if rest[0] == "namespaces" and len(rest) >= 3:
        rest = rest[2:]
    named = len(rest) > 1
    actions = {"POST": "CREATE", "PATCH": "UPDATE", "PUT": "UPDATE", "DELETE": "DELETE"}
    if record.method == "GET":
        action = "WATCH" if record.is_watch else "FETCH" if named else "LIST"
    else:
        action = actions.get(record.method, record.method)
    return source, action, rest[0], "/".join(rest[2:])


class ProxyStats:
    """Counts the proxy's journal into a :class:`Tally` and empties it (answered requests)."""

    def __init__(self, proxy: ApiProxy) -> None:
        self.proxy = proxy
        self.tally = Tally()
        self.counted = 0  # journal entries at the head already counted (still awaiting an answer)

    def drain(self) -> None:
        journal = self.proxy.journal
        for record in journal[self.counted:]:
            size = len(json.dumps(record.data, separators=(",", ":"))) if record.data is not None else 0
            self.tally.add(proxy_key(record), size)
        for record in journal:
            if record.status:
                self.tally.trace_write(proxy_key(record), record.path, record.data, record.status)
        journal[:] = [r for r in journal if not r.status]
        self.counted = len(journal)

    def snapshot(self) -> dict[str, Any]:
        self.drain()
        return self.tally.snapshot(0)


def _summary(data: Any) -> Any:
    """A write's body for the trace, without Secret or ConfigMap values (only their keys)."""
    if isinstance(data, dict):
        return {k: (sorted(v) if k in ("data", "stringData") and isinstance(v, dict) else _summary(v))
                for k, v in data.items()}
    if isinstance(data, list):
        return [_summary(v) for v in data]
    return data


def install_hooks(stats: Stats) -> None:
    """Costs 1 and 2 of the module docstring, for this process only (3 is :meth:`Stats.trim`)."""
    original_handle = kmock_apps.RawHandler._handle

    async def handle(self: Any, request: Any) -> Any:
        # kmock's matching runs synchronously at the start of the original coroutine, so
        # every request another task logged before is either matched already or still
        # waiting to get here (and is kept).
        if self is stats.emulator:
            stats.on_match(request)
        return await original_handle(self, request)

    kmock_apps.RawHandler._handle = handle  # type: ignore[method-assign]

    cls = kmock.KubernetesEmulator
    original_get_objs = cls._KubernetesEmulator__get_objs  # type: ignore[attr-defined]

    def get_objs(self: Any, request: Any, strict: bool) -> list[Any]:
        if strict and request.name is not None and request.resource is not None:
            obj = self._objects._objects.get((request.resource, request.namespace, request.name))
            return [] if obj is None else [obj]
        return list(original_get_objs(self, request, strict))

    cls._KubernetesEmulator__get_objs = get_objs  # type: ignore[attr-defined]


def selector_matches(selector: str, labels: Mapping[str, Any]) -> bool:
    """Equality-based label selectors (``k=v``, ``k==v``, ``k!=v``, ``k``, ``!k``, comma = and).

    Set-based terms (``in``, ``notin``) are not understood and match everything.
    """
    for term in (t.strip() for t in selector.split(",")):
        if not term or " in " in term or " notin " in term:
            continue
        if "!=" in term:
            key, value = (x.strip() for x in term.split("!=", 1))
            ok = labels.get(key) != value
        elif "=" in term:
            key, value = (x.strip() for x in term.replace("==", "=").split("=", 1))
            ok = labels.get(key) == value
        elif term.startswith("!"):
            ok = term[1:].strip() not in labels
        else:
            ok = term in labels
        if not ok:
            return False
    return True


def _labels(obj: Any) -> Mapping[str, Any]:
    labels = ((obj or {}).get("metadata") or {}).get("labels") if isinstance(obj, Mapping) else None
    return labels if isinstance(labels, Mapping) else {}


def install_label_selectors() -> None:
    """``--label-selectors``: honour ``?labelSelector=`` on LIST and WATCH, and ``limit``/``continue``
    pagination on LIST, as a real API server does.

    Must run before the emulator is created: kmock binds its list/watch handlers at creation.
    """
    cls = kmock.KubernetesEmulator
    original_list, original_watch = cls._serve_list, cls._serve_watch

    async def serve_list(self: Any, request: Any) -> Any:
        payload = await original_list(self, request)
        selector = request.params.get("labelSelector")
        if selector and isinstance(payload, dict):
            payload = {**payload, "items": [o for o in payload["items"] if selector_matches(selector, _labels(o))]}
        limit = request.params.get("limit")
        if limit and isinstance(payload, dict) and int(limit) > 0:
            # pages as a real API server serves them: ``limit`` items, then a ``continue`` token
            # (an offset here; a real server's token is opaque and pins a consistent snapshot)
            start, size = int(request.params.get("continue") or 0), int(limit)
            items = payload["items"]
            meta = dict(payload.get("metadata") or {})
            if start + size < len(items):
                meta["continue"] = str(start + size)
            payload = {**payload, "metadata": meta, "items": items[start:start + size]}
        return payload

    async def serve_watch(self: Any, request: Any) -> AsyncIterator[Any]:
        selector = request.params.get("labelSelector")
        async for item in original_watch(self, request):
            if selector and isinstance(item, dict) and not selector_matches(selector, _labels(item.get("object"))):
                continue
            yield item

    cls._serve_list = serve_list  # type: ignore[method-assign]
    cls._serve_watch = serve_watch  # type: ignore[method-assign]


def preload(emulator: Any, count: int, namespaces: int, size: int) -> dict[str, Any]:
    started = time.perf_counter()
    payload = base64.b64encode(os.urandom(max(1, size * 3 // 4))).decode()
    for i in range(count):
        namespace = f"unrelated-{i % max(1, namespaces)}"
        name = f"unrelated-{i}"
        emulator.objects["v1/secrets", namespace, name] = {
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": namespace, "labels": {"app": "unrelated"}},
            "data": {"payload": payload},
        }
    return {"preloaded": count, "seconds": round(time.perf_counter() - started, 3)}


Handler = Callable[[Mapping[str, Any]], dict[str, Any]]


async def command_loop(hello: dict[str, Any], handlers: Mapping[str, Handler]) -> None:
    """Print ``hello``, then answer one JSON command per line of stdin until ``quit`` or its end."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def answer(payload: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(payload) + "\n")
        sys.stdout.flush()

    answer(hello)
    while line := await reader.readline():
        try:
            command = json.loads(line)
            cmd = command.get("cmd")
            if cmd == "quit":
                answer({"bye": True})
                break
            handler = handlers.get(cmd)
            answer(handler(command) if handler is not None else {"error": f"unknown command {cmd!r}"})
        except Exception as exc:  # a bad command must not kill the server mid-benchmark
            answer({"error": f"{type(exc).__name__}: {exc}"})


async def periodically(seconds: float, work: Callable[[], None]) -> None:
    while True:
        await asyncio.sleep(seconds)
        work()


async def serve(*, plain: bool, label_selectors: bool) -> None:
    if label_selectors:
        install_label_selectors()
    async with running_emulator() as emu:
        stats = Stats(emu.emulator)
        if not plain:
            install_hooks(stats)
        keeper = asyncio.create_task(periodically(5.0, stats.trim)) if not plain else None
        handlers: dict[str, Handler] = {
            "stats": lambda _: stats.snapshot(plain=plain),
            "preload": lambda c: preload(emu.emulator, int(c["count"]), int(c.get("namespaces", 10)),
                                         int(c.get("size", 1024))),
        }
        try:
            await command_loop({"url": emu.url, "pid": os.getpid(), "plain_kmock": plain,
                                "label_selectors": label_selectors}, handlers)
        finally:
            if keeper is not None:
                keeper.cancel()


async def serve_proxy(upstream: str, ca_file: str) -> None:
    from tests.cluster.proxy import running_proxy

    async with running_proxy(upstream, ca_file) as proxy:
        stats = ProxyStats(proxy)
        keeper = asyncio.create_task(periodically(1.0, stats.drain))
        try:
            await command_loop({"url": proxy.url, "pid": os.getpid(), "upstream": upstream},
                               {"stats": lambda _: stats.snapshot()})
        finally:
            keeper.cancel()


def _option(name: str) -> str | None:
    args = sys.argv[1:]
    return args[args.index(name) + 1] if name in args[:-1] else None


def main() -> int:
    plain = "--plain-kmock" in sys.argv[1:] or os.environ.get("TRUSTWIRE_BENCH_PLAIN_KMOCK") == "1"
    selectors = "--label-selectors" in sys.argv[1:]
    profile = os.environ.get("TRUSTWIRE_BENCH_PROFILE_EMULATOR")
    upstream, ca_file = _option("--proxy"), _option("--ca")
    try:
        if upstream is not None:
            if ca_file is None:
                raise SystemExit("--proxy needs --ca FILE")
            sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.cluster, from the repository
            asyncio.run(serve_proxy(upstream, ca_file))
        elif profile:
            import cProfile

            cProfile.runctx("asyncio.run(serve(plain=plain, label_selectors=selectors))", globals(),
                            {"plain": plain, "selectors": selectors}, filename=profile)
        else:
            asyncio.run(serve(plain=plain, label_selectors=selectors))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
