"""A user-space network link between a coordinator and a device agent: latency, bandwidth, cuts.

This machine's kernel (and many CI runners) has no ``netem``, so a fleet rehearsed on one
machine gets its links from a small TCP proxy instead: the coordinator dials the proxy, the
proxy dials the agent, and every byte crossing it, in either direction, is

* **delayed**: delivered no earlier than ``latency_ms`` after the proxy read it. Each direction
  is a FIFO of timestamped chunks, so latency does not cost throughput: a stream keeps flowing
  with ``latency_ms`` of data in flight, as on a real long link;
* **serialized**: at ``mbps`` megabits per second per direction, each chunk occupying the link
  for its size over the bandwidth, one after another, with no burst allowance: a message of
  ``n`` bytes sent on an idle link arrives ``latency_ms + n / bandwidth`` after it was sent,
  what the device file's link model (:func:`edgevit.partition.cost.transfer_ms`) predicts;
* **cut** on demand: :meth:`LinkProxy.cut` resets every open connection (both sides see a TCP
  RST) and resets new ones the moment they arrive, until :meth:`LinkProxy.restore`.

What is not emulated: loss (TCP cannot lose bytes; a lossy link shows up as latency and jitter),
jitter, and the handshake's round trip (connecting costs no added latency; the first bytes do).
A direction holds at most :data:`MAX_QUEUED_BYTES` before the proxy stops reading from its
sender, so a fast sender on a slow link is slowed down rather than buffered without bound.

Example:
    >>> with LinkProxy("127.0.0.1:8001", LinkSpec(latency_ms=5, mbps=100)) as link:
    ...     client = AgentClient(link.address)   # every request now crosses the emulated link
    ...     link.cut()                           # the device drops off the network
    ...     link.restore()

From a shell, one proxy per device (runs until SIGINT or SIGTERM)::

    python -m edgevit.cluster.emulate --listen 127.0.0.1:9001 --upstream 127.0.0.1:8001 \\
        --latency-ms 1 --mbps 100

Only the standard library is imported; the proxy listens on loopback addresses only, so it can
never put an agent that serves loopback without credentials onto the network.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import ipaddress
import logging
import math
import signal
import socket
import struct
import sys
import threading
import traceback
from dataclasses import asdict, dataclass

from edgevit.errors import InvalidArgumentError

__all__ = ["LinkSpec", "LinkStats", "LinkProxy", "run_link", "main"]

log = logging.getLogger("edgevit.cluster")

DEFAULT_LISTEN = "127.0.0.1:0"
#: the most a direction holds (read, not yet delivered) before the proxy stops reading its sender
MAX_QUEUED_BYTES = 4 << 20
#: the largest read from a socket
CHUNK_BYTES = 64 << 10
MAX_LATENCY_MS = 60_000.0
CONNECT_TIMEOUT_SECONDS = 10.0
#: how long a control call (cut, restore, set_link, stats) waits for the proxy's thread
CONTROL_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class LinkSpec:
    """What a link does to the traffic crossing it, the same in both directions.

    Attributes:
        latency_ms: one-way delay added to every byte (a round trip gains twice this).
        mbps: bandwidth in megabits per second per direction; None for no limit.

    Example:
        >>> LinkSpec(latency_ms=20, mbps=10)   # a congested Wi-Fi hop
    """

    latency_ms: float = 0.0
    mbps: float | None = None

    def __post_init__(self) -> None:
        latency = self.latency_ms
        if not _is_number(latency) or not 0 <= latency <= MAX_LATENCY_MS:
            raise InvalidArgumentError(
                f"latency_ms must be a number of milliseconds between 0 and {MAX_LATENCY_MS:.0f}, got {latency!r}")
        mbps = self.mbps
        if mbps is not None and (not _is_number(mbps) or not mbps > 0 or math.isinf(mbps)):
            raise InvalidArgumentError(
                f"mbps must be a bandwidth in megabits per second greater than 0, got {mbps!r}; "
                "leave it out (None) for no limit")

    @property
    def bytes_per_second(self) -> float | None:
        return None if self.mbps is None else self.mbps * 1e6 / 8

    def to_dict(self) -> dict[str, float | None]:
        return asdict(self)

    def describe(self) -> str:
        """``"latency 20 ms and 10 Mbit/s each way"``: for log lines."""
        bandwidth = "no bandwidth limit" if self.mbps is None else f"{self.mbps:g} Mbit/s"
        return f"latency {self.latency_ms:g} ms and {bandwidth} each way"


@dataclass(frozen=True)
class LinkStats:
    """What a proxy has done since it was made.

    Attributes:
        connections: connections accepted (including those reset because the link was cut).
        refused: connections reset on arrival because the link was cut.
        open_connections: connections open now.
        bytes_to_upstream / bytes_to_client: bytes delivered in each direction.
    """

    connections: int = 0
    refused: int = 0
    open_connections: int = 0
    bytes_to_upstream: int = 0
    bytes_to_client: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class LinkProxy:
    """A TCP proxy on loopback that plays a network link, in a thread with its own event loop.

    Every control (:meth:`cut`, :meth:`restore`, :meth:`set_link`, :meth:`stats`) may be called
    from any thread, and has taken effect when it returns.

    Args:
        upstream: ``"host:port"`` of the agent behind the link.
        spec: the link (default: no latency, no bandwidth limit).
        listen: ``"host:port"`` to listen on, a loopback address; port 0 picks a free port
            (:attr:`port` and :attr:`address` say which once started).

    Example:
        >>> with LinkProxy("127.0.0.1:8001", LinkSpec(latency_ms=20)) as link:
        ...     channel = grpc.insecure_channel(link.address)
        ...     link.set_link(LinkSpec(latency_ms=20, mbps=1))   # the link degrades
    """

    def __init__(self, upstream: str, spec: LinkSpec | None = None, *, listen: str = DEFAULT_LISTEN) -> None:
        self._link = _Link(upstream, spec or LinkSpec(), listen)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    def __enter__(self) -> LinkProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> LinkProxy:
        """Listen and forward, in a background thread; returns once listening."""
        if self._thread is not None:
            raise RuntimeError("this LinkProxy is already running")
        started = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(started, failure),),
                                        name=f"edgevit-link-{self._link.upstream_address}", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            self._thread.join()
            self._thread = self._loop = self._stop = None
            raise failure[0]
        return self

    def stop(self) -> None:
        """Reset every open connection, stop listening and end the thread (idempotent)."""
        if self._thread is None:
            return
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join()
        self._thread = self._loop = self._stop = None

    def cut(self) -> None:
        """Reset every open connection now, and every new one, until :meth:`restore`."""
        self._control(self._link.cut)

    def restore(self) -> None:
        """Forward new connections again after :meth:`cut` (the dropped ones stay dropped)."""
        self._control(self._link.restore)

    def set_link(self, spec: LinkSpec) -> None:
        """Change the link's latency and bandwidth; applies to bytes already queued, too."""
        if not isinstance(spec, LinkSpec):
            raise InvalidArgumentError(f"set_link takes a LinkSpec, got {type(spec).__name__}")
        self._control(self._link.set_spec, spec)

    def stats(self) -> LinkStats:
        """Connections and bytes forwarded so far."""
        return self._control(self._link.stats)

    @property
    def spec(self) -> LinkSpec:
        return self._link.spec

    @property
    def port(self) -> int:
        """The port listened on (known once started)."""
        if self._link.port is None:
            raise RuntimeError("the LinkProxy has not started: use `with LinkProxy(...)` or start()")
        return self._link.port

    @property
    def address(self) -> str:
        """``"host:port"`` for clients to dial instead of the upstream's address."""
        return _format_address(self._link.listen[0], self.port)

    async def _serve(self, started: threading.Event, failure: list[BaseException]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            await self._link.start()
        except BaseException as exc:
            failure.append(exc)
            started.set()
            return
        started.set()
        try:
            await self._stop.wait()
        finally:
            await self._link.close()

    def _control(self, method, *args):
        """Run ``method(*args)`` on the proxy's loop and wait until the connections it dropped are gone."""
        loop = self._loop
        if loop is None:  # not running: no connections, nothing to race with
            return method(*args)

        async def call():
            result = method(*args)
            await self._link.settled()
            return result

        return asyncio.run_coroutine_threadsafe(call(), loop).result(CONTROL_TIMEOUT_SECONDS)


def run_link(upstream: str, spec: LinkSpec | None = None, listen: str = DEFAULT_LISTEN) -> int:
    """Emulate a link in the foreground until SIGINT or SIGTERM; prints one line, returns 0.

    Example:
        >>> run_link("127.0.0.1:8001", LinkSpec(latency_ms=1, mbps=100), listen="127.0.0.1:9001")
    """
    return asyncio.run(_run_until_signal(_Link(upstream, spec or LinkSpec(), listen)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m edgevit.cluster.emulate",
        description="Emulate a network link in front of a device agent: a TCP proxy on loopback that adds "
                    "latency and limits bandwidth in both directions. Runs until SIGINT or SIGTERM.")
    parser.add_argument("--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                        help="loopback address to listen on; port 0 picks one (default: %(default)s)")
    parser.add_argument("--upstream", required=True, metavar="HOST:PORT", help="the agent behind the link")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="one-way delay in ms (default: 0)")
    parser.add_argument("--mbps", type=float, default=None,
                        help="bandwidth per direction in Mbit/s (default: no limit)")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    return parser


def main(argv: list[str] | None = None) -> int:
    """The command line; errors print as ``ErrorType: message`` and return 1."""
    args = build_parser().parse_args(argv)
    try:
        return run_link(args.upstream, LinkSpec(latency_ms=args.latency_ms, mbps=args.mbps), listen=args.listen)
    except Exception as exc:  # noqa: BLE001 - the command line turns every error into one line
        if args.debug:
            traceback.print_exc()
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


async def _run_until_signal(link: _Link) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await link.start()
    try:
        print(f"emulating a link on {_format_address(link.listen[0], link.port)} -> {link.upstream_address}: "
              f"{link.spec.describe()} (SIGINT or SIGTERM stops)", flush=True)
        await stop.wait()
    finally:
        await link.close()
    return 0


class _Link:
    """The proxy itself, on whichever event loop calls :meth:`start`; every method runs there."""

    def __init__(self, upstream: str, spec: LinkSpec, listen: str) -> None:
        if not isinstance(spec, LinkSpec):
            raise InvalidArgumentError(f"spec must be a LinkSpec, got {type(spec).__name__}")
        self.upstream = _parse_address(upstream, "upstream", allow_port_zero=False)
        host, port = _parse_address(listen, "listen", allow_port_zero=True)
        _require_loopback(host, listen)
        self.listen = ("127.0.0.1" if host == "localhost" else host, port)  # one socket, one port
        self.spec = spec
        self.port: int | None = None
        self.is_cut = False
        self._closing = False
        self._server: asyncio.Server | None = None
        self._tasks: dict[asyncio.Task, list[asyncio.StreamWriter]] = {}
        self._dropped: set[asyncio.Task] = set()
        self._pipes: set[_Pipe] = set()
        self._counts = {"connections": 0, "refused": 0, "bytes_to_upstream": 0, "bytes_to_client": 0}

    @property
    def upstream_address(self) -> str:
        return _format_address(*self.upstream)

    async def start(self) -> None:
        host, port = self.listen
        self._closing = False
        try:
            self._server = await asyncio.start_server(self._accept, host, port, limit=CHUNK_BYTES)
        except OSError as exc:
            raise InvalidArgumentError(f"cannot listen on {_format_address(host, port)}: {exc.strerror or exc}; "
                                       "choose another port, or port 0 for any free one") from exc
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self._closing = True
        if self._server is not None:
            self._server.close()
        self.drop_all()
        await self.settled()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def cut(self) -> None:
        self.is_cut = True
        self.drop_all()

    def restore(self) -> None:
        self.is_cut = False

    def set_spec(self, spec: LinkSpec) -> None:
        self.spec = spec
        for pipe in self._pipes:
            pipe.wake.set()  # a pipe waiting out the old latency or rate looks again

    def stats(self) -> LinkStats:
        return LinkStats(open_connections=len(self._tasks), **self._counts)

    def count(self, key: str, n: int = 1) -> None:
        self._counts[key] += n

    def drop_all(self) -> None:
        """Reset every connection (a RST to both sides) and cancel its handler."""
        for task, writers in self._tasks.items():
            for writer in writers:
                _reset(writer)
            task.cancel()
            self._dropped.add(task)

    async def settled(self) -> None:
        """Wait until the connections dropped so far are gone."""
        if self._dropped:
            await asyncio.wait(list(self._dropped))

    def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        """A new connection: its handler is registered at once, so a cut or a stop never misses it.

        (The handler is a task of its own rather than ``start_server``'s: Python 3.11 logs a
        cancelled ``start_server`` handler as an error.)
        """
        self.count("connections")
        writers = [client_writer]
        task = asyncio.get_running_loop().create_task(self._handle(client_reader, writers))
        self._tasks[task] = writers
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task) -> None:
        del self._tasks[task]
        self._dropped.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("forwarding a connection failed", exc_info=task.exception())

    async def _handle(self, client_reader: asyncio.StreamReader, writers: list[asyncio.StreamWriter]) -> None:
        try:
            if self.is_cut or self._closing:
                self.count("refused")
                return
            if await self._connect_and_forward(client_reader, writers):
                for writer in writers:
                    writer.close()
                for writer in writers:
                    with contextlib.suppress(OSError):
                        await writer.wait_closed()
        finally:
            for writer in writers:
                _reset(writer)  # nothing left to do on a connection closed cleanly

    async def _connect_and_forward(self, client_reader: asyncio.StreamReader,
                                   writers: list[asyncio.StreamWriter]) -> bool:
        """Dial the upstream and forward both ways; True when both sides ended with an EOF."""
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream, limit=CHUNK_BYTES)
        except TimeoutError:
            log.warning("cannot reach the upstream %s: no answer in %.0f s", self.upstream_address,
                        CONNECT_TIMEOUT_SECONDS)
            return False
        except OSError as exc:
            log.warning("cannot reach the upstream %s: %s", self.upstream_address, exc)
            return False
        client_writer = writers[0]
        writers.append(upstream_writer)
        _no_delay(client_writer, upstream_writer)
        return await self._forward(_Pipe(self, client_reader, upstream_writer, "bytes_to_upstream"),
                                   _Pipe(self, upstream_reader, client_writer, "bytes_to_client"))

    async def _forward(self, *pipes: _Pipe) -> bool:
        """Run both directions until each has delivered its EOF (True), or one side fails (False)."""
        self._pipes.update(pipes)
        failed = False
        try:
            async with asyncio.TaskGroup() as group:
                for pipe in pipes:
                    group.create_task(pipe.receive())
                    group.create_task(pipe.deliver())
        except* OSError:  # one side reset or vanished: the other side is reset too
            failed = True
        finally:
            self._pipes.difference_update(pipes)
        return not failed


class _Pipe:
    """One direction of one connection: a FIFO of (time read, bytes), delivered after the latency
    and at the rate of the link's current spec. ``b""`` in the FIFO is the sender's EOF."""

    def __init__(self, link: _Link, source: asyncio.StreamReader, sink: asyncio.StreamWriter, counter: str) -> None:
        self.link = link
        self.source = source
        self.sink = sink
        self.counter = counter
        self.queue: collections.deque[tuple[float, memoryview]] = collections.deque()
        self.queued = 0
        self.wake = asyncio.Event()  # new data in an empty FIFO, or a new spec
        self.room = asyncio.Event()  # the FIFO fell below MAX_QUEUED_BYTES
        self.wire = _Wire()

    async def receive(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self.queued >= MAX_QUEUED_BYTES:
                self.room.clear()
                await self.room.wait()
                continue
            data = await self.source.read(CHUNK_BYTES)
            if not self.queue:
                self.wake.set()
            self.queue.append((loop.time(), memoryview(data)))
            self.queued += len(data)
            if not data:
                return

    async def deliver(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.queue:
                await self._wait(None)
                continue
            read_at, data = self.queue[0]
            spec = self.link.spec
            now, eligible = loop.time(), read_at + spec.latency_ms / 1000
            # one wait per chunk (each asyncio timer may fire up to a millisecond late)
            early = self.wire.until_sent(len(data), eligible, now, spec.bytes_per_second) if data else 0.0
            early = max(early, eligible - now)
            if early > 0:
                await self._wait(early)
                continue
            if not data:
                if self.sink.can_write_eof():
                    self.sink.write_eof()
                return
            self.queue.popleft()
            self.queued -= len(data)
            if self.queued < MAX_QUEUED_BYTES:
                self.room.set()
            self.sink.write(data)
            self.link.count(self.counter, len(data))
            await self.sink.drain()

    async def _wait(self, seconds: float | None) -> None:
        """Sleep ``seconds`` (None: until woken), or less if woken by new data or a new spec."""
        self.wake.clear()
        try:
            async with asyncio.timeout(seconds):
                await self.wake.wait()
        except TimeoutError:
            pass


class _Wire:
    """When the head chunk has crossed the link: chunks are serialized one after another at the
    link's rate, each starting when it may (read time plus latency) and the wire is free, so a
    burst after an idle spell pays its full transfer time, as on a real link."""

    def __init__(self) -> None:
        self.free_at = float("-inf")  # when the wire finishes the chunks already sent
        self.done_at: float | None = None  # when the head chunk will have crossed
        self.rate: float | None = None

    def until_sent(self, size: int, eligible: float, now: float, rate: float | None) -> float:
        """Seconds until the head chunk (``size`` bytes, deliverable from ``eligible``) has crossed; 0
        when it has, and then the wire moves on to the next chunk."""
        if rate is None:
            self.done_at, self.free_at = None, float("-inf")
            return 0.0
        if self.done_at is None or rate != self.rate:  # a new head chunk, or the link changed under it
            self.rate = rate
            self.done_at = max(eligible, self.free_at) + size / rate
        if now < self.done_at:
            return self.done_at - now
        self.free_at, self.done_at = self.done_at, None
        return 0.0


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close a connection the way a dropped link looks to the peer: a TCP RST, no flushing."""
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.fileno() >= 0:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _no_delay(*writers: asyncio.StreamWriter) -> None:
    """The proxy adds its own delays; Nagle's would add more on small messages."""
    for writer in writers:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _parse_address(text: str, what: str, allow_port_zero: bool) -> tuple[str, int]:
    """``"127.0.0.1:9001"`` or ``"[::1]:9001"`` as ``(host, port)``."""
    host, sep, port_text = str(text).rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    low = 0 if allow_port_zero else 1
    if not sep or not host or not port_text.isdigit() or not low <= int(port_text) <= 65535:
        raise InvalidArgumentError(f"the {what} address must be HOST:PORT with a port between {low} and 65535, "
                                   f"got {text!r} (for example 127.0.0.1:8001)")
    return host, int(port_text)


def _require_loopback(host: str, text: str) -> None:
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise InvalidArgumentError(
            f"the link emulator listens on loopback addresses only (127.0.0.1, ::1, localhost), got {text!r}: "
            "on another address it would put the agent behind it on the network, past the agent's own refusal "
            "to serve beyond loopback without credentials")


def _format_address(host: str, port: int | None) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


if __name__ == "__main__":
    sys.exit(main())
