"""Test support: read a W&B run back from its local ``.wandb`` files, with no server and no API
key, merging the segments of a resumed run. Built on the framing in
``acdc_exp.loggers.wandb_log_file`` (the runtime keeps only what the logger uses).

    run = read_run("runs/digits_acdc/2025-01-01_12-00-00")   # run dir, wandb dir or .wandb file
    run.series("val/sparse/top1", x="epoch")                 # [(epoch, top1), ...]
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

from acdc_exp.errors import DataError
from acdc_exp.loggers.wandb_log_file import HEADER, check_header, framed_records, record_class


def iter_record_bytes(path: str | Path) -> Iterator[bytes]:
    """The raw protobuf bytes of every complete record of a ``.wandb`` file."""
    path = Path(path)
    data = path.read_bytes()
    check_header(path, data)
    for raw, _ in framed_records(path, data, HEADER.size):
        yield raw


def iter_records(path: str | Path) -> Iterator[Any]:
    """Every record of a ``.wandb`` file as a ``wandb_internal_pb2.Record``."""
    record_cls = record_class()
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
