"""What a hostile or broken export cannot do to validation: a huge header, slow start-up imports.

Times are measured in benchmarks/ (see the README), not asserted here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import cast

import pytest

from hrconnector_core.errors import InputFileError
from hrconnector_core.mapping import Mapping
from hrconnector_core.pipeline import default_mapping
from hrconnector_core.validation import Issue, RowValidator

from .conftest import SAMPLES
from .test_validation_fastpath import Recorder

WIDE = 100_000


def wide_header(*names: str) -> list[str]:
    return [*names, *(f"Column{i}" for i in range(WIDE))]


def test_a_100000_column_header_validates():
    header = wide_header("EmailAddress", "EffectiveDate", "Rating")
    validator = RowValidator(header, default_mapping(header))
    good = ["a@x.com", "2024-04-23T15:18:02Z", "3", *[""] * WIDE]
    bad = ["a@x.com", "2024-04-23T15:18:02Z", "x" * 26, *["v"] * WIDE]
    sink = Recorder()
    rows = list(validator.validate_rows([(2, good), (3, bad)], sink))
    assert rows == [(2, good)]
    ((event, row, fields, issues),) = sink.events
    assert (event, row, fields) == ("rejected", 3, tuple(bad))
    assert [(i.row, i.column, i.code) for i in cast(tuple[Issue, ...], issues)] == [(3, "Rating", "too-long")]
    assert validator.scenario_counts() == {"Performance review": {"valid": 1, "rejected": 1}}


def test_a_duplicate_column_at_the_end_of_a_100000_column_header_is_found():
    header = [*wide_header("EmailAddress", "EffectiveDate"), " column7 "]
    with pytest.raises(InputFileError, match=r"more than once:  column7 , Column7$"):
        RowValidator(header, default_mapping(header))


def test_the_closest_header_is_named_in_a_100000_column_header():
    header = [*wide_header("UPN"), "Review_Date"]
    mapping = Mapping.from_dict(
        {
            "scenarios": [
                {"scenario": "performance_review", "columns": {"EmailAddress": "UPN", "EffectiveDate": "Review date"}}
            ]
        }
    )
    with pytest.raises(InputFileError, match=r"'Review date'.*closest header is 'Review_Date'"):
        RowValidator(header, mapping)


PROBE = """
import json, sys
from hrconnector_core.cli import main
code = main(sys.argv[1:])
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("azure", "requests", "urllib3", "msal"))
loaded += [m for m in ("importlib.metadata",) if m in sys.modules]  # only --version needs it
print(json.dumps({"exit": code, "loaded": loaded}))
"""


@pytest.mark.parametrize("command", ["validate", "upload --dry-run"])
def test_validate_and_a_dry_run_load_neither_azure_nor_requests(command, tmp_path):
    """Start-up time: azure-core and requests take about 0.1-0.3 s to import and these never use them."""
    sample = str(SAMPLES / "resignation.csv")
    if command == "validate":
        argv = ["validate", sample]
    else:
        argv = ["upload", "--job-id", "j", "--file", sample, "--dry-run", "--state-dir", str(tmp_path)]
    out = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"exit": 0, "loaded": []}
