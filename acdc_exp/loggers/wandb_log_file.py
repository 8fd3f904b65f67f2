"""The framing of W&B's local ``.wandb`` transaction log, and a wait for its exit record.

The file is a leveldb-style log: a 7-byte header (``:W&B``, magic 0xBEE1, version 0), then
32 KiB blocks of chunks, each chunk ``crc32 (u32 LE) | length (u16 LE) | type (u8) | data``
with type full / first / middle / last; a chunk never crosses a block boundary, and a block
tail shorter than a chunk header is zero padding. Joined chunk data is one protobuf
``wandb_internal_pb2.Record``.

The logger needs only ``wait_until_complete``; the tests read whole runs back with
``tests/support/wandb_records.py`` on top of this framing (wandb 0.31 ships no reader of its own).
"""

from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path
from typing import Iterator, Tuple

from acdc_exp.errors import DataError

HEADER = struct.Struct("<4sHB")
CHUNK = struct.Struct("<IHB")
IDENT, MAGIC, VERSION = b":W&B", 0xBEE1, 0
BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
# the CRC of a chunk covers its type byte, then its data
_TYPE_CRC = {t: zlib.crc32(bytes([t])) for t in (FULL, FIRST, MIDDLE, LAST)}


def record_class() -> type:
    from wandb.proto import wandb_internal_pb2  # wandb only for W&B runs

    return wandb_internal_pb2.Record


def check_header(path: Path, data: bytes) -> None:
    if len(data) < HEADER.size:
        raise DataError(f"{str(path)!r} is too short to be a .wandb file ({len(data)} bytes)")
    ident, magic, version = HEADER.unpack_from(data, 0)
    if ident != IDENT or magic != MAGIC or version != VERSION:
        raise DataError(f"{str(path)!r} is not a .wandb log (header {data[: HEADER.size]!r})")


def framed_records(path: Path, data: bytes, off: int) -> Iterator[Tuple[bytes, int]]:
    """``(record bytes, offset just past it)`` for every complete record from ``off`` on
    (``off`` must be a record boundary). A torn tail (a run killed mid-write, or a file
    still being written) ends the iteration quietly; a bad checksum earlier is a DataError."""
    pending = bytearray()
    while off < len(data):
        room = BLOCK - off % BLOCK
        if room < CHUNK.size:  # zero padding up to the next block
            off += room
            continue
        if off + CHUNK.size > len(data):
            return
        crc, length, kind = CHUNK.unpack_from(data, off)
        if crc == 0 and length == 0 and kind == 0:  # zeroed rest of a block
            off += room
            continue
        start, end = off + CHUNK.size, off + CHUNK.size + length
        if end > len(data):
            return  # torn write at the end
        chunk = data[start:end]
        if kind not in _TYPE_CRC or zlib.crc32(chunk, _TYPE_CRC[kind]) & 0xFFFFFFFF != crc:
            if end >= len(data) - CHUNK.size:
                return  # torn tail
            raise DataError(f"{str(path)!r} is corrupt at byte {off} (chunk checksum or type {kind} is wrong)")
        off = end
        if kind == FULL:
            pending = bytearray()
            yield bytes(chunk), off
        elif kind == FIRST:
            pending = bytearray(chunk)
        elif kind == MIDDLE:
            pending += chunk
        else:
            pending += chunk
            yield bytes(pending), off
            pending = bytearray()


def wait_until_complete(path: str | Path, timeout: float = 30.0) -> bool:
    """Wait until the run's exit record is on disk. ``run.finish()`` returns before wandb's
    service process has flushed the transaction log, so a reader in the same process (a
    test, a notebook) could see a partial file. False when ``timeout`` passes first."""
    path = Path(path)
    record_cls = record_class()
    deadline = time.monotonic() + timeout
    off, delay = HEADER.size, 0.02
    while True:
        data = path.read_bytes() if path.exists() else b""
        if len(data) >= HEADER.size:
            check_header(path, data)
            for raw, end in framed_records(path, data, off):
                off = end  # only new records are parsed on the next poll
                rec = record_cls()
                rec.ParseFromString(raw)
                if rec.WhichOneof("record_type") == "exit":
                    return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.5)
