"""Reusable buffers for chunk upload bodies.

A 4 MiB body read with ``readexactly`` is joined twice from the socket's pieces into
fresh allocations on the event loop, and each fresh 4 MiB costs page faults. Instead
each upload borrows a recycled buffer of the largest record size and the pieces are
copied into it once; verification and the file write work on a view of it. The
buffers are anonymous memory maps, so they are page-aligned: the chunk file is then
written with ``O_DIRECT`` straight from the buffer (``edgeback_pools.files``).

A buffer goes back to the pool only when the upload finished normally: if the handler
is cancelled while a thread may still be writing from the buffer, the buffer is dropped
rather than risk another upload overwriting bytes that are being stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import mmap
from collections.abc import AsyncIterator

from aiohttp import web


class BodyBuffers:
    """At most ``keep`` idle buffers of ``size`` bytes; more are allocated on demand."""

    def __init__(self, size: int, keep: int) -> None:
        self._size = size
        self._keep = keep
        self._free: list[mmap.mmap] = []

    @contextlib.asynccontextmanager
    async def body(self, request: web.Request) -> AsyncIterator[memoryview]:
        """The body of ``request`` (which has a ``Content-Length`` ≤ ``size``) as a view."""
        length = request.content_length or 0
        buffer = self._free.pop() if self._free else mmap.mmap(-1, self._size)
        try:
            view = memoryview(buffer)[:length]
            await _read_into(request, view)
            yield view
        except asyncio.CancelledError:
            raise  # the buffer may still be in use by a thread: never reuse it
        except BaseException:
            self._recycle(buffer)
            raise
        else:
            self._recycle(buffer)

    def _recycle(self, buffer: mmap.mmap) -> None:
        if len(self._free) < self._keep:
            self._free.append(buffer)


async def _read_into(request: web.Request, view: memoryview) -> None:
    filled, length = 0, view.nbytes
    while filled < length:
        piece = await request.content.readany()
        end = filled + len(piece)
        if not piece or end > length:
            raise web.HTTPBadRequest(reason="body does not match its Content-Length")
        view[filled:end] = piece
        filled = end
