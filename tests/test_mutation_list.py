"""The mutation list (scripts/mutation_check.py) stays in step with the code: every mutation's
old text occurs exactly once and every test it names exists. Seconds; no mutation is run."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "mutation_check.py"


def _module():
    spec = importlib.util.spec_from_file_location("mutation_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("mutation_check", module)
    spec.loader.exec_module(module)
    return module


def test_every_mutation_applies_to_the_current_code_and_names_existing_tests():
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "STALE" not in result.stderr


def test_the_check_names_a_stale_text_a_missing_test_file_and_a_missing_test(capsys):
    check = _module()
    real = check.MUTATIONS[0]
    broken = [
        check.Mutation("gone text", real.file, "text that is nowhere in the code", "x", real.tests),
        check.Mutation("gone file", real.file, real.old, real.new, ("tests/test_no_such_file.py",)),
        check.Mutation("gone test", real.file, real.old, real.new, ("tests/test_upload.py::test_no_such_test",)),
    ]
    assert check.check_list(broken) == 1
    err = capsys.readouterr().err
    assert "STALE  gone text: old text found 0 times" in err
    assert "STALE  gone file: no test file tests/test_no_such_file.py" in err
    assert "STALE  gone test: no test test_no_such_test in tests/test_upload.py" in err
    assert check.check_list([real]) == 0
