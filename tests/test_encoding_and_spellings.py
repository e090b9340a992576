"""The hand-written chunk encoder and the validator's configured spellings (issue 12's speed-ups,
from its adversarial review).

Each test compares the fast code with what it must equal: csv.writer's bytes, the emulator's
parser reading them back, the detailed checks (fast path off), and the mapping's configured
scenario spelling at the service on every path (CLI, resume, kill, workbook, Function, refresh).
"""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hrconnector_core.chunking import encode_rows, make_chunks
from hrconnector_core.emulator.server import _parse_csv
from hrconnector_core.errors import HRConnectorError
from hrconnector_core.mapping import Mapping
from hrconnector_core.validation import RowValidator

from .test_validation_fastpath import Recorder

# -- chunk bytes ---------------------------------------------------------------------------------


def writer_bytes(header: list[str], rows: list[list[str]]) -> bytes:
    """What the encoder did at 5bc8efc for every row that needed quoting: csv.writer."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


HOSTILE = [
    '"',
    '""',
    ",",
    '","',
    "\r",
    "\n",
    "\r\n",
    "\n\r",
    "a\rb",
    "a\nb",
    "\t",
    " ",
    " a ",
    "\x00",
    "a\x00b",
    "\x1f",
    "\x0b",
    "\x0c",
    "\x1c",
    "\x1d",
    "\x1e",
    "\x85",
    "\u2028",
    "\u2029",
    "\ufeff",
    "\ufeffa",
    "",
    'a,b\r\nc"d',
    "\x7f",
    "\x9f",
    "\ud7ff",
    "\U0010ffff",
    "x" * 100_000,
    '"' * 1000,
]
SHORT = HOSTILE[:-2]

unicode_field = st.text(st.characters(codec="utf-8"), max_size=10)  # every code point but surrogates
hostile_field = st.one_of(unicode_field, st.sampled_from(SHORT), st.lists(st.sampled_from(SHORT)).map("".join))


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("where", [0, 1, 2])
def test_hostile_field_bytes_equal_csv_writer(value, where):
    header = ["HRScenario", "EmailAddress", "Remarks"]
    row = ["Resignation", "a@b.co", "x"]
    row[where] = value
    rows = [row, ["a", value, value], [value, value, value]]
    assert encode_rows(header, rows) == writer_bytes(header, rows)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(1, 5).flatmap(
        lambda w: st.tuples(
            st.lists(hostile_field, min_size=w, max_size=w),
            st.lists(st.lists(hostile_field, min_size=w, max_size=w), max_size=6),
        )
    )
)
def test_any_unicode_rows_bytes_equal_csv_writer_and_read_back(data):
    header, rows = data
    got = encode_rows(header, rows)
    assert got == writer_bytes(header, rows)
    # What the emulated service reads back: exactly the rows sent (a BOM-led first header cell
    # aside: the service decodes utf-8-sig).
    if any(header) and not header[0].startswith("\ufeff"):
        parsed_header, parsed_rows = _parse_csv(got)
        assert parsed_header == header
        assert parsed_rows == rows


def test_make_chunks_round_trip_through_the_service_parser():
    header = ["HRScenario", "EmailAddress", "Remarks"]
    rows = [(n, ["Resignation", "a@b.co", v]) for n, v in enumerate(HOSTILE, start=2)]
    chunks = list(make_chunks(header, [(n, list(f)) for n, f in rows], records_per_call=7))
    back = []
    for chunk in chunks:
        parsed_header, parsed = _parse_csv(chunk.data)
        assert parsed_header == header
        back += parsed
    assert back == [f for _, f in rows]


# -- fast path vs detailed checks ----------------------------------------------------------------


def run_both(header, mapping, records):
    out = []
    for fast_path in (True, False):
        validator = RowValidator(header, mapping, fast_path=fast_path)
        sink = Recorder()
        passed = [(n, list(f)) for n, f in validator.validate_rows([(n, list(f)) for n, f in records], sink)]
        out.append((passed, sink.events, validator.scenario_counts()))
    return out


# -- scenario spelling at the service on every path ----------------------------------------------

ODD_MAPPING = {
    "scenario_column": " hrSCENARIO ",
    "scenarios": [
        {
            "scenario": "resignation",
            "value": "RESIGNATION",
            "columns": {
                "EmailAddress": "EmailAddress",
                "ResignationDate": "ResignationDate",
                "LastWorkingDate": "LastWorkingDate",
            },
        },
        {
            "scenario": "job_level_change",
            "value": 'Job, "level" change',  # the configured spelling needs quoting in the chunk
            "columns": {"EmailAddress": "EmailAddress", "EffectiveDate": "EffectiveDate"},
        },
    ],
}
MULTI_HEADER = ["HRScenario", "EmailAddress", "ResignationDate", "LastWorkingDate", "EffectiveDate"]
RES = ("2019-04-23T15:18:02", "2019-04-29T00:00:00")


def multi_rows():
    """Spellings as read (fast path, detailed path, never-cached control-character spellings),
    and two rows equal only after the spelling is configured: not duplicates as read."""
    out = []
    for n, spelling in enumerate(
        ["resignation", "Resignation ", "\x85RESIGNATION", "resignation", "RESIGNATION", "ReSiGnAtIoN\t"]
    ):
        out.append([spelling, f"r{n}@contoso.com", *RES, ""])
    for n, spelling in enumerate(['job, "LEVEL" change', ' Job, "level" change', 'JOB, "LEVEL" CHANGE']):
        out.append([spelling, f"j{n}@contoso.com", "", "", "2019-04-23T15:18:02+05:30"])
    out.append(["Resignation", "r0@contoso.com", *RES, ""])  # row 2 but for its spelling: no duplicate
    out.append(["resignation", "r0@contoso.com", *RES, ""])  # row 2 as read: a duplicate, still sent
    return out


def expected_at_service(data):
    configured = {"resignation": "RESIGNATION", 'job, "level" change': 'Job, "level" change'}
    return [[configured[r[0].strip().casefold()], *r[1:]] for r in data]


def write_multi(tmp_path):
    import json

    data = multi_rows()
    path = tmp_path / "multi.csv"
    path.write_bytes(writer_bytes(MULTI_HEADER, data))
    mapping = tmp_path / "m.json"
    mapping.write_text(json.dumps(ODD_MAPPING))
    return path, mapping, data


def test_cli_upload_resumed_after_a_refused_call_sends_configured_spellings_once(
    tmp_path, emulator, job, make_client, edge
):
    from hrconnector_core.checkpoint import LocalCheckpointStore
    from hrconnector_core.mapping import load_mapping
    from hrconnector_core.pipeline import LocalFileSource, UploadOptions, run_upload

    from .network_edge import is_upload

    path, mapping_path, data = write_multi(tmp_path)
    mapping = load_mapping(mapping_path)
    store = LocalCheckpointStore(tmp_path / "state")
    calls = {"n": 0}

    def third_upload(request):
        if not is_upload(request):
            return False
        calls["n"] += 1
        return calls["n"] == 3

    edge.answer(third_upload, 403)
    options = UploadOptions(job_id=job, records_per_call=2, max_concurrency=1, mapping=mapping)
    first = run_upload(LocalFileSource(path), options, client=make_client(job), store=store)
    assert first.status != "succeeded"
    assert len(emulator.state.uploads[job]) == 2
    second = run_upload(LocalFileSource(path), options, client=make_client(job), store=store)
    assert second.status == "succeeded", second.error
    assert emulator.state.rows(job) == expected_at_service(data)
    assert [(i.row, i.code) for i in second.issues] == [(12, "duplicate-row")]


PROFILE_MAPPING = {
    "scenario_column": "Kind",
    "scenarios": [
        {
            "scenario": "employee_profile",
            "value": "employee PROFILE",
            "columns": {
                "EmailAddress": "EmailAddress",
                "EmployeeFirstName": "First",
                "EmployeeLastName": "Last",
                "EmployeeAddressLine1": "Street",
                "EmployeeZipCode": "Zip",
            },
        },
        {
            "scenario": "resignation",
            "value": "RESIGNATION",
            "columns": {
                "EmailAddress": "EmailAddress",
                "ResignationDate": "ResignationDate",
                "LastWorkingDate": "LastWorkingDate",
            },
        },
    ],
}
PROFILE_HEADER = ["Kind", "EmailAddress", "First", "Last", "Street", "Zip", "ResignationDate", "LastWorkingDate"]


def test_function_and_timer_refresh_send_configured_spellings(emulator, function_env, monkeypatch):
    import json
    from datetime import timedelta

    from hrconnector_core.emulator.host import invoke_blob_trigger
    from hrconnector_core.service import HRConnectorService, utc_now
    from hrconnector_core.settings import Settings

    from .test_function import BLOB_FUNCTION

    monkeypatch.setenv("HR_MAPPING", json.dumps(PROFILE_MAPPING))
    monkeypatch.setenv("HR_RECORDS_PER_CALL", "2")
    monkeypatch.setenv("HR_MAX_CONCURRENCY", "1")
    env = function_env
    data = [
        ["Employee Profile", "p1@contoso.com", "A", "B", '1 Main St, "Flat" 2', "12345", "", ""],
        ["employee profile ", "p2@contoso.com", "C", "D", "Street\r\nline 2", "123", "", ""],
        ["\u2028EMPLOYEE PROFILE", "p3@contoso.com", "E", "F", "S", "1", "", ""],
        ["resignation", "r1@contoso.com", "", "", "", "", *RES],
        [" Resignation", "r2@contoso.com", "", "", "", "", *RES],
    ]
    configured = {"employee profile": "employee PROFILE", "resignation": "RESIGNATION"}
    expected = [[configured[r[0].strip().casefold()], *r[1:]] for r in data]
    env.drop("main/mixed.csv", writer_bytes(PROFILE_HEADER, data))
    invoke_blob_trigger(BLOB_FUNCTION, env.settings.containers.incoming, "main/mixed.csv")
    assert emulator.state.rows(env.job) == expected
    service = HRConnectorService(Settings.from_env())
    summary = service.run_schedule(utc_now() + timedelta(days=15))
    assert summary.refreshed == ["main"], summary
    assert emulator.state.rows(env.job) == expected + expected  # the refresh sends the file again


# -- property: random mappings (odd spellings, any column order, shared columns) ------------------

from hrconnector_core.validation import SEP  # noqa: E402

from .test_validation_fastpath import CONTROLS, date, email, noisy, text  # noqa: E402

EVENT_FIELDS = {
    "resignation": ["EmailAddress", "ResignationDate", "LastWorkingDate"],
    "job_level_change": ["EmailAddress", "EffectiveDate", "Remarks", "OldLevel", "NewLevel"],
    "performance_review": ["EmailAddress", "EffectiveDate", "Remarks", "Rating"],
    "performance_improvement_plan": ["EmailAddress", "EffectiveDate", "Remarks", "Rating"],
}
KIND_OF = {"EmailAddress": "email", "ResignationDate": "date", "LastWorkingDate": "date", "EffectiveDate": "date"}


@st.composite
def mapped_files(draw):
    width = draw(st.integers(2, 7))
    names = [f"C{i}" for i in range(width)]
    scen = draw(st.sampled_from([0, 0, draw(st.integers(0, width - 1))]))
    names[scen] = draw(st.sampled_from(["HRScenario", "Type", "kind"]))
    keys = draw(st.lists(st.sampled_from(sorted(EVENT_FIELDS)), min_size=1, max_size=4, unique=True))
    scenarios = []
    for k in keys:
        value = draw(st.sampled_from([k, k.upper(), f" {k} ", k.replace("_", " "), "x" + k, k.title()]))
        columns = {}
        for f in EVENT_FIELDS[k]:
            required = f in ("EmailAddress", "ResignationDate", "LastWorkingDate", "EffectiveDate")
            if required or draw(st.booleans()):
                # any column, the scenario column included (nothing forbids it)
                col = draw(st.integers(0, width - 1))
                columns[f] = names[col]
        scenarios.append({"scenario": k, "value": value, "columns": columns})
    column_spelling = draw(st.sampled_from([names[scen], names[scen].upper(), f" {names[scen]} "]))
    try:
        mapping = Mapping.from_dict({"scenario_column": column_spelling, "scenarios": scenarios})
    except HRConnectorError:  # a mapping the settings refuse: nothing to compare
        mapping = None
    kinds: dict[str, str] = {}
    for s in scenarios:
        for f, c in s["columns"].items():
            kinds.setdefault(c, KIND_OF.get(f, "text"))
    values = [s["value"] for s in scenarios]

    def cell(i):
        if i == scen:
            return draw(
                st.one_of(
                    st.sampled_from(values),
                    st.sampled_from(values).map(str.swapcase),
                    st.sampled_from(values).map(lambda v: f" {v}\t"),
                    st.sampled_from(["", "nope", *CONTROLS[:3]]),
                )
            )
        kind = kinds.get(names[i], "text")
        return draw(noisy(email) if kind == "email" else noisy(date) if kind == "date" else noisy(text))

    records = []
    for n in range(draw(st.integers(1, 8))):
        fields = [cell(i) for i in range(width)]
        if draw(st.integers(0, 6)) == 0:
            j = draw(st.integers(0, width - 1))
            fields[j] = fields[j] + draw(st.sampled_from([SEP, "\x00", "\x1e"])) + "x"
        wrong = draw(st.integers(0, 8))  # rows of the wrong width: short (padded) or long (extra fields)
        if wrong == 0:
            fields = fields[: draw(st.integers(0, width - 1))]
        elif wrong == 1:
            fields = [*fields, *draw(st.lists(st.sampled_from(["", " ", "x"]), min_size=1, max_size=2))]
        records.append((n + 2, fields))
    if draw(st.booleans()):
        records.append((len(records) + 2, list(records[0][1])))
    return names, mapping, records


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(mapped_files())
def test_random_mappings_fast_and_detailed_agree(data):
    header, mapping, records = data
    assume(mapping is not None)
    try:
        fast, detailed = run_both(header, mapping, records)
    except HRConnectorError as exc:  # a file-level error must be the same on both paths
        with pytest.raises(type(exc)):
            RowValidator(header, mapping, fast_path=False)
        return
    assert fast == detailed


def test_cli_killed_mid_file_then_resumed_sends_configured_spellings_once(tmp_path, emulator, job):
    """A real CLI process killed while its 4th call is held in the service (the service saves
    nothing for a caller gone); the second run resumes, verifies the three chunks it has, sends the rest."""
    import json
    import subprocess

    from .conftest import cli_command, cli_env, start_cli, upload_args

    path, mapping_path, data = write_multi(tmp_path)
    state_dir = tmp_path / "state"
    extra = ("--records-per-call", "2", "--max-concurrency", "1", "--mapping", str(mapping_path))
    holds = [emulator.state.hold_next_upload(timeout=60) for _ in range(4)]
    proc = start_cli(emulator, *upload_args(emulator, job, path, state_dir, *extra))
    try:
        for hold in holds[:3]:
            assert hold.arrived.wait(60)
            hold.release()
        assert holds[3].arrived.wait(60)
        proc.kill()
        proc.communicate(timeout=30)
        abandoned = emulator.state.counters.get("abandoned", 0)
        holds[3].release()  # the service sees its caller gone: nothing saved
        while emulator.state.counters.get("abandoned", 0) == abandoned:
            holds[3].arrived.wait(0.01)
    finally:
        for hold in holds:
            hold.release()
        if proc.poll() is None:
            proc.kill()
    assert len(emulator.state.uploads[job]) == 3
    out = tmp_path / "second.json"
    result = subprocess.run(
        cli_command(*upload_args(emulator, job, path, state_dir, *extra, "--report", str(out))),
        env=cli_env(emulator), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    assert report["rows"]["previously_uploaded"] == 6 and report["rows"]["uploaded"] == 5
    assert emulator.state.rows(job) == expected_at_service(data)


def test_workbook_upload_sends_configured_spellings(tmp_path, emulator, job, make_client):
    import openpyxl

    from hrconnector_core.checkpoint import LocalCheckpointStore
    from hrconnector_core.mapping import load_mapping
    from hrconnector_core.pipeline import LocalFileSource, UploadOptions, run_upload

    _, mapping_path, data = write_multi(tmp_path)
    data = [r for r in data if "\x85" not in r[0]]  # (XML 1.0 text cannot hold every control character)
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(MULTI_HEADER)
    for r in data:
        sheet.append(r)
    path = tmp_path / "multi.xlsx"
    book.save(path)
    options = UploadOptions(job_id=job, records_per_call=3, max_concurrency=1, mapping=load_mapping(mapping_path))
    report = run_upload(
        LocalFileSource(path), options, client=make_client(job), store=LocalCheckpointStore(tmp_path / "s")
    )
    assert report.status == "succeeded", report.error
    assert emulator.state.rows(job) == expected_at_service(data)
