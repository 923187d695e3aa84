"""Files tunewise writes where the user points it, and how it knows them again: it never truncates,
rewrites or appends to a file it did not write, or to one edited since.

Each such file comes with a record tunewise wrote beside it, checked before any byte changes:
- an append-only output (predict's JSONL): the sidecar `FILE.tunewise`, a header line, then one line per
  flushed batch with the bytes the file then held and their SHA-256. Resuming goes on after the last batch
  the file still matches; the only bytes ever cut are those past it, which must be lines of the writer's
  own shape (a batch a kill interrupted).
- a folder of outputs (the reports): `.tunewise-files.json`, each file tunewise wrote there with its SHA-256.
A missing path, or an empty file, is fresh.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import TunewiseError

SIDECAR = ".tunewise"
FOLDER_RECORD = ".tunewise-files.json"
FORMAT = 1


def sidecar_of(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR)


def not_ours(file: Path, why: str) -> TunewiseError:
    return TunewiseError(f"not a file tunewise wrote ({why}); tunewise never writes into a file it did not "
                         f"write: choose another --out", file=str(file))


def changed(file: Path, why: str, line: int | None = None) -> TunewiseError:
    return TunewiseError(f"changed since tunewise wrote it ({why}); tunewise never writes into an edited file: "
                         f"choose another --out", file=str(file), line=line)


def cannot_write(asked: Path, what: str, err: OSError) -> TunewiseError:
    return TunewiseError(f"cannot write {what} here ({err.strerror or err}); choose another --out", file=str(asked))


def make_folder(folder: Path, asked: Path, what: str) -> None:
    """`folder`, made if need be; an error names the path the user asked for (`asked`), never a temporary one."""
    blocking = next((p for p in (folder, *folder.parents) if p.is_file()), None)
    if blocking is not None:
        raise TunewiseError(f"cannot write {what} here: {blocking} is a file, not a folder; choose another --out",
                            file=str(asked))
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise cannot_write(asked, what, err) from None


def replace(path: Path, data: bytes) -> None:
    """Write `path` whole or not at all: a kill mid-write leaves the previous bytes."""
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _line(record: dict) -> bytes:
    return json.dumps(record).encode() + b"\n"


# -- an append-only output and its sidecar ----------------------------------------------------------
@dataclass
class Resume:
    """Where an append-only output goes on: the bytes checked as tunewise's, and its sidecar's header."""
    path: Path
    writer: str
    header: dict[str, Any] | None  # None: a fresh file
    data: bytes                    # the bytes kept: every recorded batch the file still holds
    marks: list[dict[str, Any]]    # those batches' records
    digest: Any                    # the running SHA-256 of `data`

    @contextmanager
    def start(self, header: dict[str, Any], what: str) -> Iterator[Callable[[bytes], None]]:
        """The sidecar (re)written, the unrecorded tail cut, then a function that appends one batch and
        records it once it is on disk."""
        sidecar = sidecar_of(self.path)
        make_folder(self.path.parent, self.path, what)
        with ExitStack() as stack:
            try:
                replace(sidecar, b"".join(map(_line, [dict(header, writer=self.writer, format=FORMAT),
                                                      *self.marks])))
                out = stack.enter_context(self.path.open("ab"))
                log = stack.enter_context(sidecar.open("ab"))
                out.truncate(len(self.data))
            except OSError as err:
                raise cannot_write(self.path, what, err) from None
            yield self._appender(out, log)

    def _appender(self, out, log) -> Callable[[bytes], None]:
        size, digest = len(self.data), self.digest.copy()

        def append(batch: bytes) -> None:
            nonlocal size
            _durable(out, batch)
            digest.update(batch)
            size += len(batch)
            _durable(log, _line({"bytes": size, "sha256": digest.hexdigest()}))
        return append


def _durable(handle, data: bytes) -> None:
    handle.write(data)
    handle.flush()
    os.fsync(handle.fileno())  # a finished batch survives a kill, even of the machine


def check_appendable(path: Path, writer: str, own_line: Callable[[bytes, bool], bool]) -> Resume:
    """What of `path` is tunewise's own, checked without changing a byte. `own_line(line, complete)` says
    whether a line past the last recorded batch has the writer's shape (`complete`: it ends in a newline)."""
    if path.exists() and not path.is_file():
        raise not_ours(path, "it is not a file")
    header, marks = _read_sidecar(sidecar_of(path), writer)
    data = path.read_bytes() if path.exists() else b""
    if header is None and data:
        raise not_ours(path, f"no {sidecar_of(path).name} beside it records what it wrote")
    size, digest, kept = _recorded(path, data, marks)
    _check_tail(path, data, size, own_line)
    return Resume(path, writer, header if data else None, data[:size], kept, digest)


def _read_sidecar(sidecar: Path, writer: str) -> tuple[dict | None, list[dict]]:
    """The header and batch records; a last line a kill cut short is left out."""
    if not sidecar.exists():
        return None, []
    try:
        lines = [json.loads(line) for line in sidecar.read_bytes().split(b"\n")[:-1]]
        header, marks = lines[0], lines[1:]
        if header.get("writer") != writer or not all(isinstance(m["bytes"], int) and isinstance(m["sha256"], str)
                                                     for m in marks):
            raise ValueError
    except (OSError, ValueError, IndexError, KeyError, TypeError, AttributeError):
        raise not_ours(sidecar, f"it is where tunewise keeps its record of {sidecar.name.removesuffix(SIDECAR)}"
                       ) from None
    return header, marks


def _recorded(path: Path, data: bytes, marks: list[dict]) -> tuple[int, Any, list[dict]]:
    """The length of the recorded batches the file still holds, checked against their digests. A file
    shorter than the last batch (cut back by a crash, or by hand at a batch's end) goes on from there."""
    size, digest, kept = 0, hashlib.sha256(), []
    for mark in marks:
        if mark["bytes"] > len(data):
            break
        grown = digest.copy()
        grown.update(data[size:mark["bytes"]])
        if mark["bytes"] < size or grown.hexdigest() != mark["sha256"]:
            raise changed(path, f"its first {mark['bytes']} bytes are not the ones {sidecar_of(path).name} records")
        size, digest = mark["bytes"], grown
        kept.append(mark)
    return size, digest, kept


def _check_tail(path: Path, data: bytes, size: int, own_line: Callable[[bytes, bool], bool]) -> None:
    """Past the recorded batches only a batch a kill interrupted: lines of the writer's shape."""
    *complete, last = data[size:].split(b"\n")
    first = data[:size].count(b"\n") + 1
    for i, line in enumerate([*complete, last]):
        if (i < len(complete) or line) and not own_line(line, i < len(complete)):
            raise changed(path, "not a line tunewise wrote, after the last batch it recorded", line=first + i)


# -- a folder of outputs and its record ----------------------------------------------------------------
def check_folder(folder: Path, names: list[str], writer: str) -> dict[str, str]:
    """The files tunewise wrote in `folder` by name (their SHA-256), after checking that each of `names`
    already there is one of them, unchanged; nothing is written."""
    record = _read_record(folder / FOLDER_RECORD, writer)
    for name in names:
        file = folder / name
        if not file.exists():
            continue
        if name not in record or not file.is_file():
            raise not_ours(file, f"{FOLDER_RECORD} beside it does not list it")
        if _sha256(file.read_bytes()) != record[name]:
            raise changed(file, f"its SHA-256 is not the one {FOLDER_RECORD} records")
    return record


def record_folder(folder: Path, record: dict[str, str], written: dict[str, bytes], writer: str) -> None:
    """Add the files just written to the folder's record."""
    record = dict(record, **{name: _sha256(data) for name, data in written.items()})
    replace(folder / FOLDER_RECORD, json.dumps({"writer": writer, "format": FORMAT, "files": record},
                                               indent=2).encode())


def _read_record(path: Path, writer: str) -> dict[str, str]:
    if not path.exists():
        return {}
    try:
        record = json.loads(path.read_bytes())
        if record["writer"] != writer or not all(isinstance(v, str) for v in record["files"].values()):
            raise ValueError
        return dict(record["files"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise not_ours(path, "it is where tunewise keeps its record of the files it wrote here") from None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
