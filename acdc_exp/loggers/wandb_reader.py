"""Read a W&B run back from its local ``.wandb`` transaction log, with no server and no API key.

The file is a leveldb-style log: a 7-byte header (``:W&B``, magic 0xBEE1, version 0), then
32 KiB blocks of chunks, each chunk ``crc32 (u32 LE) | length (u16 LE) | type (u8) | data``
with type full / first / middle / last; a chunk never crosses a block boundary, and a block
tail shorter than a chunk header is zero padding. Joined chunk data is one protobuf
``wandb_internal_pb2.Record`` (history rows, summary and config updates, artifacts ...).

    run = read_run("runs/digits_acdc/2025-01-01_12-00-00")   # run dir, wandb dir or .wandb file
    run.series("val/sparse/top1", x="epoch")                 # [(epoch, top1), ...]
"""
from __future__ import annotations

import json
import struct
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from acdc_exp.errors import DataError

HEADER = struct.Struct("<4sHB")
CHUNK = struct.Struct("<IHB")
IDENT, MAGIC, VERSION = b":W&B", 0xBEE1, 0
BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
# the CRC of a chunk covers its type byte, then its data
_TYPE_CRC = {t: zlib.crc32(bytes([t])) for t in (FULL, FIRST, MIDDLE, LAST)}


def _record_class():
    from wandb.proto import wandb_internal_pb2

    return wandb_internal_pb2.Record


def _check_header(path: Path, data: bytes) -> None:
    if len(data) < HEADER.size:
        raise DataError(f"{str(path)!r} is too short to be a .wandb file ({len(data)} bytes)")
    ident, magic, version = HEADER.unpack_from(data, 0)
    if ident != IDENT or magic != MAGIC or version != VERSION:
        raise DataError(f"{str(path)!r} is not a .wandb log (header {data[:HEADER.size]!r})")


def _framed(path: Path, data: bytes, off: int) -> Iterator[Tuple[bytes, int]]:
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


def iter_record_bytes(path: str | Path) -> Iterator[bytes]:
    """The raw protobuf bytes of every complete record of a ``.wandb`` file."""
    path = Path(path)
    data = path.read_bytes()
    _check_header(path, data)
    for raw, _ in _framed(path, data, HEADER.size):
        yield raw


def wait_until_complete(path: str | Path, timeout: float = 30.0) -> bool:
    """Wait until the run's exit record is on disk. ``run.finish()`` returns before wandb's
    service process has flushed the transaction log, so a reader in the same process (a
    test, a notebook) could see a partial file. False when ``timeout`` passes first."""
    path = Path(path)
    record_cls = _record_class()
    deadline = time.monotonic() + timeout
    off, delay = HEADER.size, 0.02
    while True:
        data = path.read_bytes() if path.exists() else b""
        if len(data) >= HEADER.size:
            _check_header(path, data)
            for raw, end in _framed(path, data, off):
                off = end  # only new records are parsed on the next poll
                rec = record_cls()
                rec.ParseFromString(raw)
                if rec.WhichOneof("record_type") == "exit":
                    return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def iter_records(path: str | Path) -> Iterator[Any]:
    """Every record of a ``.wandb`` file as a ``wandb_internal_pb2.Record``."""
    record_cls = _record_class()
    for raw in iter_record_bytes(path):
        rec = record_cls()
        rec.ParseFromString(raw)
        yield rec


def _decode(value_json: str) -> Any:
    try:
        return json.loads(value_json)
    except ValueError:  # NaN / Infinity spelled the Go way, or other non-JSON text
        return value_json


def _assign(target: Dict[str, Any], item) -> None:
    """Put one history / summary item into ``target``. ``key`` is a flat name; ``nested_key``
    is a path into nested dicts (media objects are logged as nested fields)."""
    path = [item.key] if item.key else list(item.nested_key)
    if not path:
        return
    node = target
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[path[-1]] = _decode(item.value_json)


def _remove(target: Dict[str, Any], item) -> None:
    path = [item.key] if item.key else list(item.nested_key)
    node: Any = target
    for part in path[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict) and path:
        node.pop(path[-1], None)


@dataclass
class RunRecord:
    run_id: str = ""
    name: str = ""
    project: str = ""
    entity: str = ""
    group: str = ""
    job_type: str = ""
    tags: List[str] = field(default_factory=list)
    config: Dict[str, Any] = field(default_factory=dict)
    history: List[Dict[str, Any]] = field(default_factory=list)
    summary: Dict[str, Any] = field(default_factory=dict)
    files: List[str] = field(default_factory=list)
    # name, type, metadata, files (paths inside the artifact)
    artifacts: List[Dict[str, Any]] = field(default_factory=list)
    # define_metric records: name or glob_name, step_metric
    metrics: List[Dict[str, Any]] = field(default_factory=list)
    exit_codes: List[int] = field(default_factory=list)  # one per finished segment
    segments: List[Path] = field(default_factory=list)  # the .wandb files read, oldest first

    def series(self, key: str, x: str = "_step") -> List[Tuple[Any, Any]]:
        """``(x, value)`` for every history row holding ``key``."""
        return [(row.get(x), row[key]) for row in self.history if key in row]

    def media_file(self, ref: Dict[str, Any]) -> Path:
        """The local file of a logged image or table (a history or summary value such as
        ``{"_type": "table-file", "path": "media/table/..."}``), searched in every segment."""
        rel = ref.get("path") if isinstance(ref, dict) else None
        if not rel:
            raise DataError(f"{ref!r} is not a logged media reference (no 'path')")
        for seg in reversed(self.segments):
            candidate = seg.parent / "files" / rel
            if candidate.exists():
                return candidate
        raise DataError(f"media file {rel!r} is not in any segment of run {self.run_id!r}")

    def load_table(self, ref: Dict[str, Any]) -> List[Dict[str, Any]]:
        """A logged ``wandb.Table`` as a list of ``{column: value}`` rows."""
        payload = json.loads(self.media_file(ref).read_text())
        return [dict(zip(payload["columns"], row)) for row in payload["data"]]

    def keys(self) -> List[str]:
        seen: Dict[str, None] = {}
        for row in self.history:
            seen.update(dict.fromkeys(row))
        return list(seen)


def _config_value(item) -> Any:
    value = _decode(item.value_json)
    # wandb wraps config values as {"value": v, "desc": ...} in some paths; unwrap those
    if isinstance(value, dict) and set(value) <= {"value", "desc"} and "value" in value:
        return value["value"]
    return value


def _apply(run: RunRecord, rec) -> None:
    kind = rec.WhichOneof("record_type")
    if kind == "run":
        r = rec.run
        run.run_id = r.run_id or run.run_id
        run.name = r.display_name or run.name
        run.project = r.project or run.project
        run.entity = r.entity or run.entity
        run.group = r.run_group or run.group
        run.job_type = r.job_type or run.job_type
        if r.tags:
            run.tags = list(r.tags)
        for item in r.config.update:
            _assign_config(run, item)
    elif kind == "config":
        for item in rec.config.update:
            _assign_config(run, item)
        for item in rec.config.remove:
            _remove(run.config, item)
    elif kind == "history":
        row: Dict[str, Any] = {}
        for item in rec.history.item:
            _assign(row, item)
        run.history.append(row)
    elif kind == "summary":
        for item in rec.summary.update:
            _assign(run.summary, item)
        for item in rec.summary.remove:
            _remove(run.summary, item)
    elif kind == "files":
        run.files.extend(f.path for f in rec.files.files if f.path not in run.files)
    elif kind == "artifact":
        a = rec.artifact
        run.artifacts.append(
            {
                "name": a.name,
                "type": a.type,
                "metadata": _decode(a.metadata) if a.metadata else {},
                "files": [e.path for e in a.manifest.contents],
                "digest": a.digest,
            }
        )
    elif kind == "metric":
        m = rec.metric
        run.metrics.append({"name": m.name, "glob_name": m.glob_name, "step_metric": m.step_metric})
    elif kind == "exit":
        run.exit_codes.append(int(rec.exit.exit_code))


def _assign_config(run: RunRecord, item) -> None:
    path = [item.key] if item.key else list(item.nested_key)
    if not path:
        return
    node = run.config
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = _config_value(item)


def find_run_files(path: str | Path) -> List[Path]:
    """The ``.wandb`` files under a run dir (``<run_dir>/wandb/*run-*/run-*.wandb``), a wandb
    dir, or one offline-run dir; a resumed run has one file per segment."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(f"{str(path)!r} does not exist; give a run dir, its wandb/ dir or a .wandb file")
    files: List[Path] = []
    for pattern in ("*.wandb", "*run-*/*.wandb", "wandb/*run-*/*.wandb"):
        files += [f for f in sorted(path.glob(pattern)) if f not in files]
    if not files:
        raise DataError(f"no .wandb file under {str(path)!r} (was the run logged with logger=wandb?)")
    return files


def _start_time(path: Path) -> Tuple[float, str]:
    for rec in iter_records(path):
        if rec.WhichOneof("record_type") == "run":
            return rec.run.start_time.seconds + rec.run.start_time.nanos * 1e-9, str(path)
    return float("inf"), str(path)


def read_file(path: str | Path) -> RunRecord:
    """One ``.wandb`` file (one segment of a run)."""
    run = RunRecord(segments=[Path(path)])
    for rec in iter_records(path):
        _apply(run, rec)
    return run


def read_run(path: str | Path, run_id: Optional[str] = None) -> RunRecord:
    """A run, its segments merged oldest first: history concatenated, config and summary
    updated in order. When the files hold several run ids, ``run_id`` picks one (else it
    is an error, since merging different runs would be meaningless)."""
    files = sorted(find_run_files(path), key=_start_time)
    parts = [read_file(f) for f in files]
    ids = sorted({p.run_id for p in parts})
    if run_id is not None:
        parts = [p for p in parts if p.run_id == run_id]
        if not parts:
            raise DataError(f"run_id={run_id!r} is not under {str(path)!r}; found: {', '.join(ids)}")
    elif len(ids) > 1:
        raise DataError(f"{str(path)!r} holds several W&B runs ({', '.join(ids)}); pass run_id= to pick one")
    merged = RunRecord()
    for p in parts:
        merged.run_id = p.run_id or merged.run_id
        for attr in ("name", "project", "entity", "group", "job_type"):
            setattr(merged, attr, getattr(p, attr) or getattr(merged, attr))
        merged.tags = p.tags or merged.tags
        _deep_update(merged.config, p.config)
        _deep_update(merged.summary, p.summary)
        merged.history.extend(p.history)
        merged.files.extend(f for f in p.files if f not in merged.files)
        merged.artifacts.extend(p.artifacts)
        merged.metrics.extend(p.metrics)
        merged.exit_codes.extend(p.exit_codes)
        merged.segments.extend(p.segments)
    return merged


def _deep_update(target: Dict[str, Any], source: Dict[str, Any]) -> None:
    for k, v in source.items():
        if isinstance(v, dict) and isinstance(target.get(k), dict):
            _deep_update(target[k], v)
        else:
            target[k] = v


def read_runs(path: str | Path) -> Dict[str, RunRecord]:
    """Every run under ``path`` by run id (a sweep's dir, or a dir with several runs)."""
    files = find_run_files(path)
    ids = {read_file_id(f) for f in files}
    return {i: read_run(path, run_id=i) for i in sorted(ids)}


def read_file_id(path: str | Path) -> str:
    for rec in iter_records(path):
        if rec.WhichOneof("record_type") == "run":
            return rec.run.run_id
    return ""


__all__: Sequence[str] = [
    "RunRecord", "read_file_id", "wait_until_complete", "read_run", "read_runs", "read_file", "find_run_files", "iter_records", "iter_record_bytes",
]
