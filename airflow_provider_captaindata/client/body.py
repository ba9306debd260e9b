"""Reading an answer's body under a size cap, for both clients.

Both clients hand the raw bytes (``decode_content=False`` in urllib3, ``auto_decompress=False``
in aiohttp) to :class:`BodyReader`, which decompresses them itself with a bound on its output:
a 100 KB gzip answer that inflates to gigabytes is refused after ``limit`` bytes, never held
whole. Only the encodings the clients ask for (``ACCEPT_ENCODING``) are accepted.
"""

from __future__ import annotations

import zlib

from airflow_provider_captaindata.exceptions import CaptainDataResponseTooLarge, CaptainDataTransportError

ACCEPT_ENCODING = "gzip, deflate"
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
CHUNK_BYTES = 64 * 1024
# zlib's automatic header detection: gzip or zlib-wrapped deflate.
_GZIP_OR_ZLIB = 32 + zlib.MAX_WBITS


class BodyReader:
    """Collects one answer's body, decompressed, refusing it past ``limit`` bytes."""

    def __init__(self, method: str, path: str, content_encoding: str | None, limit: int) -> None:
        self.method = method
        self.path = path
        self.limit = limit
        self._parts: list[bytes] = []
        self._size = 0
        encoding = (content_encoding or "").strip().lower()
        if encoding in ("", "identity"):
            self._inflate: zlib._Decompress | None = None
        elif encoding in ("gzip", "x-gzip", "deflate"):
            self._inflate = zlib.decompressobj(_GZIP_OR_ZLIB)
        else:
            raise CaptainDataTransportError(
                f"the answer is encoded as {encoding[:40]!r}, which was not asked for "
                f"(Accept-Encoding: {ACCEPT_ENCODING})",
                sent=True,
                method=method,
                path=path,
            )

    def check_length(self, content_length: str | None) -> bool:
        """Refuse at once an uncompressed answer announced longer than the limit; True when
        the answer is uncompressed and announced within it, so it may be read whole (the
        client reads no more than the announced length)."""
        announced = (content_length or "").strip()
        if self._inflate is not None or not announced.isdigit():
            return False
        if int(announced) > self.limit:
            raise CaptainDataResponseTooLarge(self.method, self.path, self.limit)
        return True

    def feed(self, chunk: bytes) -> None:
        if self._inflate is None:
            self._add(chunk)
            return
        try:
            # At most one byte past the room left: more output than that is refused, so a
            # bomb never inflates beyond the limit in memory.
            self._add(self._inflate.decompress(chunk, self.limit - self._size + 1))
        except zlib.error:
            raise self._corrupt() from None

    def finish(self) -> bytes:
        if self._inflate is not None:
            try:
                self._add(self._inflate.flush())
            except zlib.error:
                raise self._corrupt() from None
            if not self._inflate.eof and self._size:
                raise self._corrupt()
        return b"".join(self._parts)

    def _add(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self.limit:
            raise CaptainDataResponseTooLarge(self.method, self.path, self.limit)
        if data:
            self._parts.append(data)

    def _corrupt(self) -> CaptainDataTransportError:
        return CaptainDataTransportError(
            "the compressed answer is cut short or corrupt", sent=True, method=self.method, path=self.path
        )
