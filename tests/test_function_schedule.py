"""The timer over weeks, with an injected clock: employee-profile refresh whatever is dropped, and
the missing-export alert."""

from __future__ import annotations

import itertools
import logging
from datetime import datetime, timedelta, timezone

import pytest

from hrconnector_core.service import EXPORT_ALERT, HRConnectorService
from hrconnector_core.settings import Settings

from .conftest import SAMPLES, FunctionEnv
from .csvdata import HEADER, csv_bytes, parse, rows

DAY0 = datetime(2026, 1, 5, tzinfo=timezone.utc)


class Calendar:
    """The service's clock: the test moves it."""

    def __init__(self) -> None:
        self.now = DAY0

    def __call__(self) -> datetime:
        return self.now

    def at(self, day: int, hour: int) -> datetime:
        self.now = DAY0 + timedelta(days=day, hours=hour)
        return self.now


def test_profiles_are_uploaded_every_refresh_period_whatever_is_dropped(emulator, function_env: FunctionEnv) -> None:
    """Issue 11.3: the same export dropped on days 0, 12, 25 and 38 and the timer every day for 60
    days. An identical export sends nothing (its rows are already in the service), so it must not
    count as an upload: the connector sees an upload at least every HR_PROFILE_REFRESH_DAYS (14)."""
    env = function_env
    profile = (SAMPLES / "employee-profile.csv").read_bytes()
    profile_rows = parse(profile)[1:]
    calendar = Calendar()
    service = HRConnectorService(Settings.from_env(), clock=calendar)
    upload_days: list[int] = []

    def note_uploads(day: int, before: int) -> None:
        after = len(emulator.state.uploads.get(env.job, []))
        upload_days.extend([day] * (after - before))

    for day in range(61):
        before = len(emulator.state.uploads.get(env.job, []))
        if day in (0, 12, 25, 38):
            calendar.at(day, 9)
            env.drop("main/employees.csv", profile)
            outcome = service.process(env.service.incoming.get_blob_client("main/employees.csv"))
            assert outcome.status == "processed"
        summary = service.run_schedule(calendar.at(day, 12))
        assert summary.failures == [] and summary.stale_exports == []
        note_uploads(day, before)

    assert upload_days == [0, 14, 28, 42, 56]
    assert sorted(emulator.state.rows(env.job)) == sorted(5 * profile_rows)
    gaps = [b - a for a, b in itertools.pairwise(upload_days)]
    assert max(gaps) <= env.settings.profile_refresh_days


def test_a_connector_without_a_file_for_longer_than_its_cadence_raises_the_alert(
    emulator, function_env: FunctionEnv, monkeypatch, caplog
) -> None:
    env = function_env
    monkeypatch.setenv("HR_EXPECTED_EVERY_HOURS", "24")
    calendar = Calendar()
    service = HRConnectorService(Settings.from_env(), clock=calendar)
    caplog.set_level(logging.INFO, logger="hrconnector_core")

    assert service.run_schedule(calendar.at(0, 1)).overdue_exports == []  # no file yet: nothing to compare
    calendar.at(0, 2)
    env.drop("main/leavers.csv", csv_bytes(HEADER, rows(3)))
    service.process(env.service.incoming.get_blob_client("main/leavers.csv"))
    assert service.run_schedule(calendar.at(1, 1)).overdue_exports == []  # 23 hours
    assert not [r for r in caplog.records if getattr(r, "hr.alert", None)]

    summary = service.run_schedule(calendar.at(1, 3))  # 25 hours
    assert summary.overdue_exports == ["main"] and summary.failures == []
    (alert,) = [r for r in caplog.records if getattr(r, "hr.alert", None) == EXPORT_ALERT]
    assert alert.levelno == logging.ERROR
    assert getattr(alert, "hr.hours_since_last_file") == 25 and getattr(alert, "hr.expected_every_hours") == 24
    assert getattr(alert, "hr.connector") == "main"

    calendar.at(1, 4)
    env.drop("main/leavers2.csv", csv_bytes(HEADER, rows(3, start=3)))
    service.process(env.service.incoming.get_blob_client("main/leavers2.csv"))
    assert service.run_schedule(calendar.at(1, 5)).overdue_exports == []  # a file arrived: cleared


def test_a_connector_without_a_cadence_is_never_overdue(emulator, function_env: FunctionEnv) -> None:
    calendar = Calendar()
    service = HRConnectorService(Settings.from_env(), clock=calendar)
    function_env.drop("main/leavers.csv", csv_bytes(HEADER, rows(2)))
    service.process(function_env.service.incoming.get_blob_client("main/leavers.csv"))
    assert service.run_schedule(calendar.at(400, 0)).overdue_exports == []


@pytest.mark.parametrize("value", ["0", "", " "])
def test_a_cadence_of_zero_or_empty_means_no_check(function_env: FunctionEnv, monkeypatch, value: str) -> None:
    """The templates' default: the setting is there, the check is off."""
    monkeypatch.setenv("HR_EXPECTED_EVERY_HOURS", value)
    settings = Settings.from_env()
    assert not settings.problems
    assert [c.expected_every_hours for c in settings.connectors.values()] == [None]


@pytest.mark.parametrize("value", ["-3", "daily", "nan", "inf"])
def test_a_bad_cadence_is_a_connector_problem(function_env: FunctionEnv, monkeypatch, value: str) -> None:
    monkeypatch.setenv("HR_EXPECTED_EVERY_HOURS", value)
    settings = Settings.from_env()
    assert settings.connectors == {}
    assert any("expected_every_hours" in p for p in settings.problems)
