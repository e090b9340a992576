"""Local HTTPS emulator of Entra ID and the HR connector's ingestion service (tests, demos)."""

from .server import JOB_APP_MISMATCH, Emulator
from .state import EmulatorState, Faults

__all__ = ["JOB_APP_MISMATCH", "Emulator", "EmulatorState", "Faults"]
