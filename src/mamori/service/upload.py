"""Streaming uploads straight into the quarantine, never buffered whole in memory.

The request body (raw, or the ``file`` part of a ``multipart/form-data`` body) is read chunk
by chunk on the event loop and handed through a small bounded channel to a worker thread that
hashes and writes it with :meth:`BlobStore.put_stream`. At most a few chunks are in memory at
any time, whatever the upload's size; the size cap is enforced while streaming, and an
``Content-Length`` above it is refused before a byte is read. An upload that stops early
(client gone, over the cap) never becomes a blob: the worker sees an *aborted* end of stream,
not a clean one, and the blob store deletes its temporary file.
"""

from __future__ import annotations

import functools
import io
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Final

import anyio
import anyio.from_thread
import anyio.to_thread
from anyio.abc import ObjectReceiveStream
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from mamori.errors import MamoriError, ScanError, StoreError
from mamori.lifecycle import BlobStore, StoredBlob
from mamori.service.problems import PayloadTooLargeError
from mamori.text import check_name

__all__ = ["UploadedBlob", "receive_blob"]

_CHANNEL_CHUNKS: Final = 8


@dataclass(frozen=True, slots=True)
class UploadedBlob:
    """The stored blob and the file name the client gave (multipart only)."""

    blob: StoredBlob
    filename: str | None


class _AbortedError(OSError):
    """The body ended without its feeder saying it was complete."""


class _UploadAbortedError(ScanError):
    """The upload stopped early; usually a consequence of another error."""


@dataclass(slots=True)
class _Ending:
    complete: bool = False


class _ChannelReader(io.RawIOBase):
    """The worker thread's side of the channel: a readable binary file."""

    def __init__(self, receive: ObjectReceiveStream[bytes], ending: _Ending) -> None:
        super().__init__()
        self._receive = receive
        self._ending = ending
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        if not self._pending:
            try:
                self._pending = anyio.from_thread.run(self._receive.receive)
            except anyio.EndOfStream:
                if self._ending.complete:
                    return 0
                # NOTE: an early end must not look like EOF, or a truncated upload would be
                # stored (and scanned) under the digest of its first half.
                msg = "upload aborted before its end"
                raise _AbortedError(msg) from None
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


@dataclass(slots=True)
class _Multipart:
    """Pulls the data of the single ``file`` part out of a multipart body."""

    boundary: bytes
    filename: str | None = None
    _field: bytearray = field(default_factory=bytearray)
    _value: bytearray = field(default_factory=bytearray)
    _headers: dict[str, bytes] = field(default_factory=dict)
    _in_file: bool = False
    _files: int = 0
    _ended: bool = False
    _out: list[bytes] = field(default_factory=list)

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _on_header_end(self) -> None:
        self._headers[self._field.decode("latin-1").lower()] = bytes(self._value)
        self._field.clear()
        self._value.clear()

    def _on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get("content-disposition", b""))
        self._headers.clear()
        self._in_file = options.get(b"name") == b"file"
        if self._in_file:
            self._files += 1
            if self._files > 1:
                raise ScanError("multipart upload holds more than one 'file' part")
            raw = options.get(b"filename")
            if raw:
                self.filename = _file_name(raw.decode("utf-8", "replace"))

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self._out.append(data[start:end])

    def _on_part_end(self) -> None:
        self._in_file = False

    def _on_end(self) -> None:
        self._ended = True

    async def chunks(self, body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """Yield the file part's bytes as the body streams in."""
        parser = MultipartParser(
            self.boundary,
            {
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
                "on_end": self._on_end,
            },
        )
        try:
            async for chunk in body:
                parser.write(chunk)
                for piece in self._out:
                    yield piece
                self._out.clear()
            parser.finalize()
        except FormParserError as exc:
            raise ScanError("malformed multipart body") from exc
        if not self._ended:
            # python-multipart's finalize() does not check this (its own TODO); a body cut
            # short would otherwise store its partial file part as a complete upload.
            raise ScanError("multipart body ended before its closing boundary")
        if self._files == 0:
            raise ScanError("multipart upload has no 'file' part")


def _file_name(raw: str) -> str:
    # Browsers send a bare file name, other clients a path; keep the last component only.
    # Then the one name rule of mamori.text: refused (422), never silently cleaned.
    base = raw.replace("\\", "/").rsplit("/", 1)[-1]
    return check_name(base, what="multipart file name")


async def _capped(chunks: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    total = 0
    async for chunk in chunks:
        total += len(chunk)
        if total > limit:
            msg = f"upload exceeds the {limit}-byte limit"
            raise PayloadTooLargeError(msg)
        if chunk:
            yield chunk


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    leaves: list[BaseException] = []

    def _walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                _walk(inner)
        else:
            leaves.append(exc)

    _walk(group)
    # The reason the stream stopped (over the cap, bad multipart) beats the worker's
    # consequential "aborted" error.
    for leaf in leaves:
        if isinstance(leaf, MamoriError) and not isinstance(leaf, _UploadAbortedError):
            return leaf
    return leaves[0] if leaves else group


async def receive_blob(request: Request, blobs: BlobStore, *, max_bytes: int) -> UploadedBlob:
    """Stream the request body into ``blobs``; return the stored blob.

    Raises:
        PayloadTooLargeError: declared or actual size over ``max_bytes``.
        ScanError: a malformed or truncated multipart body, or one without a ``file`` part.
        InvalidNameError: a multipart file name that breaks :func:`mamori.text.check_name`.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        msg = f"upload of {declared} bytes exceeds the {max_bytes}-byte limit"
        raise PayloadTooLargeError(msg)
    media, options = parse_options_header(request.headers.get("content-type"))
    multipart: _Multipart | None = None
    chunks: AsyncIterator[bytes] = request.stream()
    if media == b"multipart/form-data":
        boundary = options.get(b"boundary")
        if not boundary:
            raise ScanError("multipart upload without a boundary")
        multipart = _Multipart(boundary)
        chunks = multipart.chunks(chunks)
    send, receive = anyio.create_memory_object_stream[bytes](max_buffer_size=_CHANNEL_CHUNKS)
    ending = _Ending()

    async def _feed() -> None:
        async with send:
            async for chunk in _capped(chunks, max_bytes):
                await send.send(chunk)
            ending.complete = True

    store: Callable[[], StoredBlob] = functools.partial(_store, blobs, receive, ending, max_bytes)
    result: list[StoredBlob] = []
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(_feed)
            result.append(await anyio.to_thread.run_sync(store))
    except BaseExceptionGroup as group_error:
        raise _first_error(group_error) from None
    finally:
        receive.close()
    return UploadedBlob(result[0], None if multipart is None else multipart.filename)


def _store(
    blobs: BlobStore, receive: ObjectReceiveStream[bytes], ending: _Ending, max_bytes: int
) -> StoredBlob:
    reader = io.BufferedReader(_ChannelReader(receive, ending), buffer_size=1 << 20)
    try:
        return blobs.put_stream(reader, max_bytes=max_bytes)
    except _AbortedError as exc:
        raise _UploadAbortedError(str(exc)) from exc
    except OSError as exc:
        msg = f"the quarantine could not store the upload: {exc.strerror or exc}"
        raise StoreError(msg) from exc
