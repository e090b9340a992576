"""Durable record of which chunks of a file the service has accepted.

A checkpoint belongs to one file content and one job: it is found by the file's SHA-256 and
the job id alone, so "this content was already uploaded in full to this job" holds whatever
the chunk size or the rules. It also records the settings that decided its chunk plan (chunk
size, mapping, policy): a partial upload resumes only under the same settings, and each chunk
it skips must have the digest of the chunk the service accepted. Anything else changing (the
file's path or modified time, the machine) does not lose it. The store is an interface: a
local directory for the command line, Blob Storage for the Function.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .errors import ConfigurationError, HRConnectorError

FORMAT_VERSION = 2  # 1 (unreleased) named checkpoints by their settings and kept no chunk digests


class CheckpointError(HRConnectorError):
    """The checkpoint could not be read, written or locked."""


class DamagedCheckpointError(CheckpointError):
    """A checkpoint exists but cannot be trusted (truncated, garbled, unknown version)."""


class CheckpointLockedError(CheckpointError):
    """Another run holds the lock of this file and job."""


@dataclass(frozen=True)
class CheckpointKey:
    file_sha256: str
    job_id: str
    records_per_call: int
    plan: str = ""  # a digest of any other setting that changes how rows are chunked

    @property
    def id(self) -> str:
        """The file content and the job: one checkpoint per pair, whatever the settings."""
        return hashlib.sha256(f"{self.file_sha256}\n{self.job_id}".encode()).hexdigest()[:40]

    def same_file(self, other: CheckpointKey) -> bool:
        return (self.file_sha256, self.job_id) == (other.file_sha256, other.job_id)


def chunk_digest(data: bytes) -> str:
    """What identifies a chunk's records (its CSV payload) in a checkpoint."""
    return hashlib.sha256(data).hexdigest()[:32]


@dataclass
class Checkpoint:
    key: CheckpointKey
    completed: dict[int, int] = field(default_factory=dict)  # chunk index -> records in it
    total_chunks: int | None = None
    finished_at: str | None = None
    digests: dict[int, str] = field(default_factory=dict)  # chunk index -> chunk_digest of what was accepted
    rows: dict[str, int] = field(default_factory=dict)  # the finished run's row accounting
    scenarios: dict[str, dict[str, int]] = field(default_factory=dict)  # and its rows per scenario
    file_name: str | None = None  # the name it was uploaded under (to spot a file replaced mid-upload)
    accepted_at: str | None = None  # when the service first accepted a chunk of it (profile expiry runs from then)

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "file_sha256": self.key.file_sha256,
            "job_id": self.key.job_id,
            "records_per_call": self.key.records_per_call,
            "plan": self.key.plan,
            "completed": {str(i): n for i, n in sorted(self.completed.items())},
            "chunk_sha256": {str(i): d for i, d in sorted(self.digests.items())},
            "total_chunks": self.total_chunks,
            "finished_at": self.finished_at,
            "rows": self.rows,
            "scenarios": self.scenarios,
            "file_name": self.file_name,
            "accepted_at": self.accepted_at,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Checkpoint:
        """Raises DamagedCheckpointError for anything that is not a checkpoint this code wrote."""
        try:
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            version = data.get("version")
            if version != FORMAT_VERSION:
                raise ValueError(f"unsupported version {version!r}")
            key = CheckpointKey(
                _text(data["file_sha256"]),
                _text(data["job_id"]),
                int(data["records_per_call"]),
                _text(data.get("plan", "")),
            )
            completed = {int(i): int(n) for i, n in _mapping(data.get("completed", {})).items()}
            digests = {int(i): _text(d) for i, d in _mapping(data.get("chunk_sha256", {})).items()}
            rows = {_text(k): int(v) for k, v in _mapping(data.get("rows") or {}).items()}
            scenarios = {
                _text(name): {_text(k): int(v) for k, v in _mapping(counts).items()}
                for name, counts in _mapping(data.get("scenarios") or {}).items()
            }
            total = data.get("total_chunks")
            finished_at = data.get("finished_at")
            if total is not None:
                total = int(total)
            if finished_at is not None:
                finished_at = _text(finished_at)
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise DamagedCheckpointError(f"not a checkpoint this version can read ({_short(exc)})") from None
        name, accepted_at = data.get("file_name"), data.get("accepted_at")
        file_name = name if isinstance(name, str) else None
        accepted = accepted_at if isinstance(accepted_at, str) else None  # absent before 2026-11-22
        return cls(key, completed, total, finished_at, digests, rows, scenarios, file_name, accepted)


MAX_CHECKPOINT_BYTES = 256 << 20  # ~4 million chunks; anything larger is not a checkpoint this code wrote


def parse_checkpoint(raw: bytes, where: str) -> Checkpoint:
    """The one reader of a stored checkpoint (local file and blob): its bytes, or a
    DamagedCheckpointError naming `where` for anything else (never another exception)."""
    if len(raw) > MAX_CHECKPOINT_BYTES:
        raise DamagedCheckpointError(f"the checkpoint {where} is damaged: larger than {MAX_CHECKPOINT_BYTES:,} bytes")
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError, OverflowError, MemoryError):
        raise DamagedCheckpointError(f"the checkpoint {where} is damaged (not valid JSON)") from None
    try:
        return Checkpoint.from_dict(data)
    except DamagedCheckpointError as exc:
        raise DamagedCheckpointError(f"the checkpoint {where} is damaged: {exc}") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 120 else f"{type(exc).__name__}"


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected text, found {type(value).__name__}")
    return value


def _mapping(value: Any) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, found {type(value).__name__}")
    return value


class CheckpointStore(Protocol):
    def load(self, key: CheckpointKey) -> Checkpoint | None:
        """The checkpoint of this file content and job (whatever settings made it), or None."""
        ...

    def save(self, checkpoint: Checkpoint) -> None: ...

    def delete(self, key: CheckpointKey) -> None: ...


@runtime_checkable
class LockingStore(Protocol):
    """A store that can keep two runs of the same file and job apart (the local directory)."""

    def lock(self, key: CheckpointKey) -> Any: ...  # a context manager giving a HeldLock


def default_state_dir() -> Path:
    """A per-user directory that survives reboots (not %TEMP%)."""
    if os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
        return base / "hrconnector" / "state"
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "hrconnector"


def _os_error(action: str, exc: OSError) -> str:
    where = f": {exc.filename}" if exc.filename else ""
    return f"{action}: {exc.strerror or type(exc).__name__}{where}"


class LocalCheckpointStore:
    """One JSON file per file content and job, replaced atomically (written, fsynced, renamed)
    so a crash never leaves half a file; a lock file beside it keeps concurrent runs apart."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def path(self, key: CheckpointKey) -> Path:
        return self.directory / f"checkpoint-{key.id}.json"

    def ensure_writable(self) -> None:
        """Prove, before anything is sent, that checkpoints can be written here."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=self.directory, prefix=".probe-", suffix=".tmp")
            try:
                os.write(fd, b"probe")
                os.fsync(fd)
            finally:
                os.close(fd)
                os.unlink(probe)
        except OSError as exc:
            raise ConfigurationError(
                _os_error(f"the state directory {str(self.directory)!r} is not writable", exc)
            ) from exc

    def load(self, key: CheckpointKey) -> Checkpoint | None:
        checkpoint = self._read(self.path(key))
        return checkpoint if checkpoint is not None and checkpoint.key.same_file(key) else None

    def _read(self, path: Path) -> Checkpoint | None:
        """A regular file of bounded size, opened without following a link or blocking on a FIFO;
        anything else at the path is a damaged checkpoint (that --force removes)."""
        try:
            fd = os.open(path, os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
        except FileNotFoundError:
            return None
        except OSError as exc:
            if os.path.islink(path) or os.path.isdir(path):
                raise DamagedCheckpointError(
                    f"the checkpoint {str(path)!r} is damaged: not a regular file (a link or a directory)"
                ) from None
            raise CheckpointError(_os_error("cannot read the checkpoint", exc)) from exc
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise DamagedCheckpointError(
                    f"the checkpoint {str(path)!r} is damaged: not a regular file (a FIFO, device or directory)"
                )
            if info.st_size > MAX_CHECKPOINT_BYTES:
                raise DamagedCheckpointError(
                    f"the checkpoint {str(path)!r} is damaged: larger than {MAX_CHECKPOINT_BYTES:,} bytes"
                )
            with os.fdopen(os.dup(fd), "rb") as handle:
                raw = handle.read(MAX_CHECKPOINT_BYTES + 1)
        except OSError as exc:
            raise CheckpointError(_os_error("cannot read the checkpoint", exc)) from exc
        finally:
            os.close(fd)
        return parse_checkpoint(raw, repr(str(path)))

    def unfinished(self, file_name: str, job_id: str) -> list[tuple[Path, Checkpoint]]:
        """Unfinished checkpoints of other content uploaded under this file name to this job."""
        found = []
        for path in sorted(self.directory.glob("checkpoint-*.json")):
            try:
                checkpoint = self._read(path)
            except CheckpointError:
                continue  # a damaged one is reported when its own content is run
            if (
                checkpoint is not None
                and not checkpoint.finished
                and checkpoint.completed
                and checkpoint.file_name == file_name
                and checkpoint.key.job_id == job_id
            ):
                found.append((path, checkpoint))
        return found

    def save(self, checkpoint: Checkpoint) -> None:
        target = self.path(checkpoint.key)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".checkpoint-", suffix=".tmp")
        except OSError as exc:
            raise CheckpointError(_os_error("cannot write the checkpoint", exc)) from exc
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(checkpoint.to_dict(), handle)
                handle.flush()
                os.fsync(handle.fileno())  # the bytes are on disk before the name points at them
            os.replace(tmp, target)
            _fsync_directory(self.directory)  # and the rename itself survives a power cut
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            raise CheckpointError(_os_error("cannot write the checkpoint", exc)) from exc
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def delete(self, key: CheckpointKey) -> None:
        path = self.path(key)
        if path.is_dir() and not path.is_symlink():
            raise CheckpointError(
                f"{str(path)!r} is a directory, not a checkpoint; this run will not remove it. Remove it yourself "
                "(it holds nothing this tool wrote) and run again"
            )
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise CheckpointError(_os_error("cannot delete the checkpoint", exc)) from exc

    @contextmanager
    def lock(self, key: CheckpointKey) -> Iterator[HeldLock]:
        """An OS lock on `checkpoint-<id>.lock`: held for the whole run, released by the OS when
        the process ends in any way (a kill -9 included), so a dead run never blocks the next.
        The lock counts only while the path still names the locked file: it is checked after
        locking (another run may have replaced it meanwhile) and before each chunk (HeldLock)."""
        path = self.directory / f"checkpoint-{key.id}.lock"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CheckpointError(_os_error("cannot create the lock file", exc)) from exc
        for _ in range(10):
            fd = _open_lock_file(path)
            try:
                if not _try_lock(fd):
                    raise CheckpointLockedError(
                        f"another run is uploading this file to this job ({_holder(path)}; lock {str(path)!r}). "
                        "Nothing was sent by this run: run it again when the other one has finished"
                    )
                held = HeldLock(path, os.fstat(fd))
                if held.intact():
                    break
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # the name was removed or replaced after we opened it: lock what it names now
        else:
            raise CheckpointError(f"the lock file {str(path)!r} keeps being replaced; nothing was sent")
        try:
            holder = f"process {os.getpid()} on {socket.gethostname()} since {_now()}"
            os.lseek(fd, _HOLDER_OFFSET, os.SEEK_SET)
            os.write(fd, holder.encode().ljust(_HOLDER_BYTES))
            self._remove_stale_temp_files()
            yield held
        finally:
            os.close(fd)  # closing releases the lock; the file stays (unlinking it would race)

    def _remove_stale_temp_files(self) -> None:
        """Temp files of a run killed mid-write (kill -9, power cut): older than a minute, no run
        is still writing them (a write takes milliseconds)."""
        cutoff = time.time() - 60
        for pattern in (".checkpoint-*.tmp", ".probe-*.tmp"):
            for stale in self.directory.glob(pattern):
                try:
                    info = stale.lstat()
                    if stat.S_ISREG(info.st_mode) and info.st_mtime < cutoff:
                        stale.unlink()
                except OSError:
                    pass  # another run removed it, or it cannot be: harmless either way


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _open_lock_file(path: Path) -> int:
    """The lock file, never through a link (which would let a lock write over another file)
    and only if it is a regular file."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0), 0o600)
    except OSError as exc:
        if os.path.islink(path) or os.path.isdir(path):
            raise CheckpointError(
                f"the lock file {str(path)!r} is not a regular file (a link or a directory): remove it and run again"
            ) from None
        raise CheckpointError(_os_error("cannot create the lock file", exc)) from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise CheckpointError(f"the lock file {str(path)!r} is not a regular file: remove it and run again")
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


class HeldLock:
    """A lock this run holds; `intact()` says whether the lock file at its path is still the one
    locked (someone deleting it would let a second run lock a new file and upload alongside)."""

    def __init__(self, path: Path, locked: os.stat_result) -> None:
        self.path = path
        self._identity = (locked.st_dev, locked.st_ino)

    def intact(self) -> bool:
        if os.name == "nt":  # pragma: no cover - a locked file cannot be deleted on Windows
            return True
        try:
            now = os.stat(self.path, follow_symlinks=False)
        except OSError:
            return False
        return (now.st_dev, now.st_ino) == self._identity


# The holder line is written past the locked byte so another process can read it on Windows,
# where a locked range cannot be read.
_HOLDER_OFFSET = 1
_HOLDER_BYTES = 200


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _holder(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(_HOLDER_OFFSET)
            text = handle.read(_HOLDER_BYTES).decode("utf-8", errors="replace").strip("\x00 \n")
    except OSError:
        text = ""
    return text or "holder unknown"


def _fsync_directory(directory: Path) -> None:
    if os.name == "nt":  # pragma: no cover - NTFS journals renames; a directory cannot be opened
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class CheckpointRecorder:
    """Marks chunks done and persists after every one; shared by parallel uploads."""

    def __init__(self, store: CheckpointStore | None, checkpoint: Checkpoint) -> None:
        self._store = store
        self.checkpoint = checkpoint
        self._lock = threading.Lock()

    def is_done(self, index: int) -> bool:
        return index in self.checkpoint.completed

    def accepted_digest(self, index: int) -> str | None:
        return self.checkpoint.digests.get(index)

    def save(self) -> None:
        """Write the checkpoint as it is (before the first chunk: proves the store works)."""
        with self._lock:
            if self._store is not None:
                self._store.save(self.checkpoint)

    def mark_done(self, index: int, records: int, digest: str | None = None) -> None:
        with self._lock:
            self.checkpoint.completed[index] = records
            self.checkpoint.accepted_at = self.checkpoint.accepted_at or _now()
            if digest is not None:
                self.checkpoint.digests[index] = digest
            if self._store is not None:
                self._store.save(self.checkpoint)

    def finish(
        self, total_chunks: int, rows: dict[str, int] | None = None, scenarios: dict[str, dict[str, int]] | None = None
    ) -> None:
        with self._lock:
            self.checkpoint.total_chunks = total_chunks
            self.checkpoint.finished_at = _now()
            self.checkpoint.rows = dict(rows or {})
            self.checkpoint.scenarios = dict(scenarios or {})
            if self._store is not None:
                self._store.save(self.checkpoint)
