"""Durable record of which chunks of a file the service has accepted.

A checkpoint is keyed by what decides the chunk plan: the file's SHA-256, the job id, the
chunk size (and, later, the validation settings). Anything else changing (the file's path or
modified time, the machine) does not lose it. The store is an interface: a local directory
for the command line, Blob Storage for the Function.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

FORMAT_VERSION = 1


@dataclass(frozen=True)
class CheckpointKey:
    file_sha256: str
    job_id: str
    records_per_call: int
    plan: str = ""  # a digest of any other setting that changes how rows are chunked

    @property
    def id(self) -> str:
        text = "\n".join([self.file_sha256, self.job_id, str(self.records_per_call), self.plan])
        return hashlib.sha256(text.encode()).hexdigest()[:40]


@dataclass
class Checkpoint:
    key: CheckpointKey
    completed: dict[int, int] = field(default_factory=dict)  # chunk index -> records in it
    total_chunks: int | None = None
    finished_at: str | None = None

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
            "total_chunks": self.total_chunks,
            "finished_at": self.finished_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Checkpoint:
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(f"unsupported checkpoint version {data.get('version')!r}")
        key = CheckpointKey(data["file_sha256"], data["job_id"], int(data["records_per_call"]), data.get("plan", ""))
        completed = {int(i): int(n) for i, n in data.get("completed", {}).items()}
        return cls(key, completed, data.get("total_chunks"), data.get("finished_at"))


class CheckpointStore(Protocol):
    def load(self, key: CheckpointKey) -> Checkpoint | None: ...

    def save(self, checkpoint: Checkpoint) -> None: ...

    def delete(self, key: CheckpointKey) -> None: ...


def default_state_dir() -> Path:
    """A per-user directory that survives reboots (not %TEMP%)."""
    if os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
        return base / "hrconnector" / "state"
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "hrconnector"


class LocalCheckpointStore:
    """One JSON file per checkpoint, replaced atomically so a crash never leaves half a file."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def path(self, key: CheckpointKey) -> Path:
        return self.directory / f"checkpoint-{key.id}.json"

    def load(self, key: CheckpointKey) -> Checkpoint | None:
        try:
            data = json.loads(self.path(key).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        checkpoint = Checkpoint.from_dict(data)
        return checkpoint if checkpoint.key == key else None

    def save(self, checkpoint: Checkpoint) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self.path(checkpoint.key)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".checkpoint-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(checkpoint.to_dict(), handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def delete(self, key: CheckpointKey) -> None:
        self.path(key).unlink(missing_ok=True)


class CheckpointRecorder:
    """Marks chunks done and persists after every one; shared by parallel uploads."""

    def __init__(self, store: CheckpointStore | None, checkpoint: Checkpoint) -> None:
        self._store = store
        self.checkpoint = checkpoint
        self._lock = threading.Lock()

    def is_done(self, index: int) -> bool:
        return index in self.checkpoint.completed

    def mark_done(self, index: int, records: int) -> None:
        with self._lock:
            self.checkpoint.completed[index] = records
            if self._store is not None:
                self._store.save(self.checkpoint)

    def finish(self, total_chunks: int) -> None:
        with self._lock:
            self.checkpoint.total_chunks = total_chunks
            self.checkpoint.finished_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
            if self._store is not None:
                self._store.save(self.checkpoint)
