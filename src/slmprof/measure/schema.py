"""The one versioned schema of everything slmprof writes as JSON: make, write, read, validate.

Every JSON document slmprof writes starts with

    "schema": "slmprof/1",   # the family and its version, bumped only when a field changes
                             # meaning or goes away (adding keys is backwards compatible)
    "kind":   "bench",       # what it is: a command's results (bench, layers, compare, validate,
                             # plan, perplexity, models, ...), a machine profile (machine), a
                             # device profile (device), sysinfo, stat, a Chrome trace (trace)

Results of a command (`make_report`) carry the same fields around their rows:

    {
      "schema": "slmprof/1", "kind": "bench",
      "created": "2026-01-01T12:00:00Z",
      "slmprof_version": "0.1.0",
      "command": "python -m slmprof bench --model smollm2-135m",
      "machine": {...},                  # machine_info(): CPU, cores, memory, kernel, ISA path
      "model":   {...} or null,          # name, path, synthetic, type, sizes (the command's choice)
      "settings": {...},                 # the options that shaped the numbers (threads, tokens, ...)
      "records": [{...}, ...],           # one flat dict per row; keys documented by each command
      "summary": {...},                  # derived figures and one-line conclusions
      "notes":   ["...", ...]            # what could not be measured here, and why
    }

Records are flat (scalars, short lists of numbers) so that the same rows go to a table, CSV or a
DataFrame. Readers ignore keys they do not know, and read the names older versions wrote
(LEGACY_SCHEMAS), so files written before the schema had one name still load.
"""
from __future__ import annotations

import json
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from slmprof import __version__
from slmprof.errors import SlmprofError
from slmprof.files import STDOUT, atomic_write
from slmprof.measure.machine import machine_info

SCHEMA_FAMILY = "slmprof/"
SCHEMA_VERSION = 1
SCHEMA = f"{SCHEMA_FAMILY}{SCHEMA_VERSION}"

# Names written before there was one schema: name -> the kind it holds. Their version is the
# document's "schema_version" field, or the name's "/N" suffix.
LEGACY_SCHEMAS = {
    "slmprof.machine": "machine",
    "slmprof-device": "device",
    "slmprof.stat/1": "stat",
    "slmprof.measure.sysinfo/1": "sysinfo",
    "slmprof.sysinfo/1": "sysinfo",
}


class ReportError(SlmprofError, ValueError):
    """A file that is not an slmprof document, one of another kind, or one of a newer schema."""


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _command_line() -> str:
    argv = list(sys.argv)
    if argv and argv[0].endswith(("__main__.py", "slmprof")):
        argv = ["python", "-m", "slmprof"] + argv[1:]
    return shlex.join(argv)     # quoted: the line runs again as written


def stamp(kind: str, body: dict) -> dict:
    """`body` as a document of `kind`: schema and kind first (any older schema fields go)."""
    doc = {"schema": SCHEMA, "kind": kind}
    doc.update((k, v) for k, v in body.items() if k not in ("schema", "schema_version", "kind"))
    return doc


def make_report(kind: str, records: Iterable[dict], *, machine: Optional[dict] = None,
                model: Optional[dict] = None, settings: Optional[dict] = None,
                summary: Optional[dict] = None, notes: Optional[Sequence[str]] = None,
                **extra: Any) -> dict:
    """A command's results in the shared schema. `machine` defaults to this machine."""
    report = {
        "schema": SCHEMA,
        "kind": kind,
        "created": _utc_now(),
        "slmprof_version": __version__,
        "command": _command_line(),
        "machine": machine if machine is not None else machine_info(),
        "model": model,
        "settings": dict(settings or {}),
        "records": [dict(r) for r in records],
        "summary": dict(summary or {}),
        "notes": list(notes or []),
    }
    report.update(extra)
    return report


# --------------------------------------------------------------------------------------------
# Writing

def _json_default(obj: Any):
    # numpy scalars and arrays, Paths, sets: everything a command naturally puts in a record.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if hasattr(obj, "__dict__"):
        return {k: v for k, v in vars(obj).items() if not k.startswith("_")}
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def clean_floats(obj: Any) -> Any:
    """JSON has no NaN/Infinity: a value that could not be measured is null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: clean_floats(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_floats(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):
        return clean_floats(obj.tolist())
    return obj


def to_json(doc: dict, indent: Optional[int] = 2) -> str:
    separators = None if indent is not None else (",", ":")
    return json.dumps(clean_floats(doc), indent=indent, separators=separators,
                      default=_json_default) + "\n"


def write_json(doc: dict, path_or_file, indent: Optional[int] = 2) -> None:
    """Write a document to a path ('-' is stdout) or an open text file. A path is written
    whole (files.atomic_write), so a reader never sees half a file."""
    text = to_json(doc, indent)
    if hasattr(path_or_file, "write"):
        path_or_file.write(text)
        return
    if str(path_or_file) == STDOUT:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    with atomic_write(path_or_file) as f:
        f.write(text)


# --------------------------------------------------------------------------------------------
# Reading and validating

def schema_of(obj: Any, source: str = "document") -> tuple:
    """(kind, version) of a document in this schema or one of the LEGACY_SCHEMAS; raises
    ReportError for anything else or for a version newer than this slmprof reads."""
    if not isinstance(obj, dict) or "schema" not in obj:
        raise ReportError(f"{source}: not an slmprof report (no 'schema' key)")
    schema = obj["schema"]
    if schema in LEGACY_SCHEMAS:
        kind = LEGACY_SCHEMAS[schema]
        version = obj.get("schema_version", 1 if "/" not in schema else schema.rsplit("/", 1)[1])
    elif isinstance(schema, str) and schema.startswith(SCHEMA_FAMILY):
        kind = obj.get("kind")
        version = schema[len(SCHEMA_FAMILY):]
    else:
        raise ReportError(f"{source}: schema {schema!r} is not an slmprof schema")
    try:
        version = int(version)
    except (TypeError, ValueError):
        raise ReportError(f"{source}: schema {schema!r} has no version number") from None
    if isinstance(version, bool) or version < 1:
        raise ReportError(f"{source}: schema {schema!r} has no valid version number")
    if version > SCHEMA_VERSION:
        raise ReportError(f"{source}: schema {schema!r} is newer than this slmprof reads "
                          f"({SCHEMA}); upgrade slmprof")
    return kind, version


def check_kind(obj: Any, kind: Optional[str] = None, source: str = "document") -> dict:
    """Check that `obj` is an slmprof document (of `kind`, if given) this version reads."""
    got, _ = schema_of(obj, source)
    if kind is not None and got != kind:
        raise ReportError(f"{source}: a {got!r} report, expected {kind!r}")
    return obj


def validate_report(obj: Any, kind: Optional[str] = None, source: str = "report") -> dict:
    """Check that `obj` is a command's results (a report with records) this version reads."""
    schema_of(obj, source)
    if not isinstance(obj.get("records"), list):
        raise ReportError(f"{source}: 'records' is missing or not a list")
    return check_kind(obj, kind, source)


def load_json(path_or_file) -> tuple:
    """(parsed JSON, source name) of a path or an open file; errors name the file."""
    if hasattr(path_or_file, "read"):
        text, source = path_or_file.read(), getattr(path_or_file, "name", "report")
    else:
        source = str(path_or_file)
        try:
            text = Path(path_or_file).read_text()
        except OSError as e:
            raise ReportError(f"{source}: cannot read: {e.strerror or e}") from None
        except UnicodeDecodeError:
            raise ReportError(f"{source}: not a text file") from None
    try:
        return json.loads(text), source
    except json.JSONDecodeError as e:
        raise ReportError(f"{source}: not valid JSON ({e.msg} at line {e.lineno})") from None


def read_json(path_or_file, kind: Optional[str] = None) -> dict:
    """Read a command's results, checking the schema (and the kind, if given)."""
    obj, source = load_json(path_or_file)
    return validate_report(obj, kind, source)
