"""A TCP proxy a test controls, to put a network partition between a process and a server.

    async with TcpProxy("127.0.0.1", 5432) as proxy:
        url = f"postgresql://...@127.0.0.1:{proxy.port}/..."
        proxy.cut()       # from now on nothing gets through, either way; nothing is refused
        proxy.restore()   # the held connections are reset (as after a real partition
                          # their state is lost); new ones get through again

A cut is a black hole, not a refusal: bytes are swallowed and connections stay open,
which is what a partition looks like from both ends (timeouts, not errors).
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._cut = False
        self._connections: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def __aenter__(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        self._reset_all()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._server.wait_closed()

    def cut(self) -> None:
        self._cut = True

    def restore(self) -> None:
        self._reset_all()
        self._cut = False

    def _reset_all(self) -> None:
        for writer in list(self._connections):
            writer.transport.abort()
        self._connections.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            while self._cut:  # a new connection during a cut waits, like a lost SYN-ACK
                await asyncio.sleep(0.05)
                if writer.transport.is_closing():
                    return
            upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
            self._connections.add(upstream_writer)
            pumps = [
                asyncio.create_task(self._pump(reader, upstream_writer)),
                asyncio.create_task(self._pump(upstream_reader, writer)),
            ]
            self._tasks.update(pumps)
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            for pump in pumps:
                pump.cancel()
                self._tasks.discard(pump)
        except OSError:
            pass
        finally:
            for end in (writer, upstream_writer):
                if end is not None:
                    self._connections.discard(end)
                    end.transport.abort()

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await source.read(65536):
                if self._cut:
                    continue  # swallowed: the other end hears nothing
                sink.write(data)
                await sink.drain()
