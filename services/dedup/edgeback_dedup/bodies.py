"""Reading request bodies: reusable buffers for chunks, read timeouts, honest errors.

A 4 MiB body read with ``readexactly`` is joined twice from the socket's pieces into
fresh allocations on the event loop, and each fresh 4 MiB costs page faults. Instead
each upload borrows a recycled buffer of the largest record size and the pieces are
copied into it once; verification and the file write work on a view of it. The
buffers are anonymous memory maps, so they are page-aligned: the chunk file is then
written with ``O_DIRECT`` straight from the buffer (``edgeback_pools.files``).

A buffer goes back to the pool only when the upload finished normally: if the handler
is cancelled while a thread may still be writing from the buffer, the buffer is dropped
rather than risk another upload overwriting bytes that are being stored.

Every read of a body waits at most ``timeout_s`` for its next bytes (``body_timeout``,
408); a body that ends before its ``Content-Length`` or is cut off is
``body_incomplete`` (400), one longer than its route allows ``http_413``.
"""

from __future__ import annotations

import asyncio
import contextlib
import mmap
from collections.abc import AsyncIterator

from aiohttp import ClientPayloadError, web

from edgeback_core.errors import BodyIncompleteError, BodyTimeoutError


class BodyBuffers:
    """At most ``keep`` idle buffers of ``size`` bytes; more are allocated on demand."""

    def __init__(self, size: int, keep: int) -> None:
        self._size = size
        self._keep = keep
        self._free: list[mmap.mmap] = []

    @contextlib.asynccontextmanager
    async def body(self, request: web.Request, timeout_s: float) -> AsyncIterator[memoryview]:
        """The body of ``request`` (which has a ``Content-Length`` ≤ ``size``) as a view."""
        length = request.content_length or 0
        buffer = self._free.pop() if self._free else mmap.mmap(-1, self._size)
        try:
            view = memoryview(buffer)[:length]
            await _read_into(request, view, timeout_s)
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


async def read_body(request: web.Request, limit: int, timeout_s: float) -> bytes:
    """The whole body, refusing more than ``limit`` bytes (413, before reading if declared)."""
    length = request.content_length
    if length is not None and length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=length)
    pieces, total = [], 0
    while True:
        piece = await _next_piece(request, timeout_s)
        if not piece:
            break
        pieces.append(piece)
        total += len(piece)
        if total > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=total)
    if length is not None and total != length:
        raise BodyIncompleteError("body does not match its Content-Length", length=length)
    return b"".join(pieces)


async def _read_into(request: web.Request, view: memoryview, timeout_s: float) -> None:
    filled, length = 0, view.nbytes
    while filled < length:
        piece = await _next_piece(request, timeout_s)
        end = filled + len(piece)
        if not piece or end > length:
            raise BodyIncompleteError("body does not match its Content-Length", length=length)
        view[filled:end] = piece
        filled = end


async def _next_piece(request: web.Request, timeout_s: float) -> bytes:
    """The next bytes of the body (empty at its end), within ``timeout_s``."""
    try:
        async with asyncio.timeout(timeout_s):
            return await request.content.readany()
    except TimeoutError:
        raise BodyTimeoutError(f"no body bytes for {timeout_s:g} s", timeout_s=timeout_s) from None
    except (ClientPayloadError, ConnectionError) as exc:
        raise BodyIncompleteError(f"body cut off: {exc}") from exc
