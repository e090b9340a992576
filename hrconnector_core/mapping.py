"""The connector's column mapping, as the connector wizard's "File mapping" page defines it.

A mapping says which CSV column holds each data field of each scenario and, for a file with
several scenarios, which column identifies a row's scenario and which value marks each one.
One header rule everywhere (inference, mapping files, validation, the header sent): a column
name is matched case-insensitively with its surrounding spaces ignored ("EmailAddress " is
EmailAddress). Stored as JSON (docs/mapping.md):

    {
      "scenario_column": "HRScenario",
      "scenarios": [
        {"scenario": "resignation", "value": "Resignation",
         "columns": {"EmailAddress": "Email", "ResignationDate": "Notice date", "LastWorkingDate": "Last day"}}
      ],
      "date_formats": {"Notice date": "%d/%m/%Y"}
    }

Without a mapping file, a header that uses the documentation's column names maps itself.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .errors import ConfigurationError
from .schema import DEFAULT_SCENARIO_COLUMN, DOCUMENTED_ALIASES, SCENARIOS, Scenario


@dataclass(frozen=True)
class ScenarioMapping:
    scenario: Scenario
    columns: dict[str, str]  # data field name -> CSV column name
    value: str | None = None  # the scenario column's value for this scenario (multi-scenario files)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"scenario": self.scenario.key, "columns": dict(self.columns)}
        if self.value is not None:
            data["value"] = self.value
        return data


@dataclass(frozen=True)
class Mapping:
    scenarios: tuple[ScenarioMapping, ...]
    scenario_column: str | None = None
    date_formats: dict[str, str] = field(default_factory=dict)  # CSV column -> strptime format

    @property
    def multi(self) -> bool:
        return self.scenario_column is not None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"scenarios": [s.to_dict() for s in self.scenarios]}
        if self.scenario_column is not None:
            data["scenario_column"] = self.scenario_column
        if self.date_formats:
            data["date_formats"] = dict(self.date_formats)
        return data

    def digest(self) -> str:
        """Identifies the mapping in a checkpoint key: another mapping may chunk rows differently."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "mapping") -> Mapping:
        def fail(message: str) -> ConfigurationError:
            return ConfigurationError(f"{source}: {message}")

        if not isinstance(data, dict):
            raise fail("expected a JSON object")
        unknown = set(data) - {"scenario_column", "scenarios", "date_formats", "$schema", "description"}
        if unknown:
            raise fail(f"unknown key(s): {', '.join(sorted(unknown))}")
        column = data.get("scenario_column")
        if column is not None and (not isinstance(column, str) or not column.strip()):
            raise fail("scenario_column must be a non-empty string")
        if column is not None:
            column = header_name(column)
        entries = data.get("scenarios")
        if not isinstance(entries, list) or not entries:
            raise fail("scenarios must be a non-empty list")
        if column is None and len(entries) > 1:
            raise fail("several scenarios need a scenario_column that tells them apart")
        scenarios = []
        seen_values: set[str] = set()
        for n, entry in enumerate(entries, 1):
            where = f"scenarios[{n}]"
            if not isinstance(entry, dict):
                raise fail(f"{where} must be an object")
            key = entry.get("scenario")
            if not isinstance(key, str) or key not in SCENARIOS:
                raise fail(f"{where}.scenario must be one of {', '.join(SCENARIOS)}")
            scenario = SCENARIOS[key]
            columns = entry.get("columns")
            if not isinstance(columns, dict) or not all(isinstance(v, str) and v for v in columns.values()):
                raise fail(f"{where}.columns must map data fields to column names")
            resolved: dict[str, str] = {}
            for field_name, column_name in columns.items():
                try:
                    resolved[scenario.field(field_name).name] = header_name(column_name)
                except KeyError:
                    names = ", ".join(f.name for f in scenario.fields)
                    raise fail(f"{where}: {scenario.title} has no field {field_name!r} (fields: {names})") from None
            missing = [f.name for f in scenario.required if f.name not in resolved]
            if missing:
                raise fail(f"{where}: {scenario.title} needs a column for {', '.join(missing)}")
            value = entry.get("value")
            if column is not None:
                if not isinstance(value, str) or not value.strip():
                    raise fail(f"{where}.value is required with a scenario_column")
                if value.strip().casefold() in seen_values:
                    raise fail(f"{where}.value {value!r} is used twice")
                seen_values.add(value.strip().casefold())
            scenarios.append(ScenarioMapping(scenario, resolved, value if column is not None else None))
        formats = data.get("date_formats", {})
        if not isinstance(formats, dict) or not all(isinstance(v, str) and "%" in v for v in formats.values()):
            raise fail("date_formats must map column names to strptime formats such as %d/%m/%Y")
        for name, text in formats.items():
            problem = _format_problem(text)
            if problem:
                raise fail(f"date_formats[{name!r}]: {text!r} is not a strptime format ({problem})")
        return cls(tuple(scenarios), column, {header_name(c): f for c, f in formats.items()})


def _format_problem(text: str) -> str | None:
    """Why `text` is not a format strptime accepts (a bad or stray % directive), or None. A date
    written with the format and read back proves it; a mismatch on read-back is not the format's fault."""
    try:
        datetime.strptime(_SAMPLE_DATE.strftime(text), text)
    except ValueError as exc:
        message = str(exc)
        if "does not match format" in message or "unconverted data remains" in message:
            return None
        return message.split(" in format")[0]
    return None


_SAMPLE_DATE = datetime(2024, 11, 28, 13, 45, 30)


MAX_MAPPING_BYTES = 1 << 20  # a mapping is a few kilobytes; anything this size is the wrong file
_MAX_DEPTH = 8  # a mapping nests four levels; deeper JSON is refused before it is parsed


def load_mapping(path: str | Path) -> Mapping:
    """The mapping file, or a ConfigurationError that names what is wrong (never a traceback)."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_MAPPING_BYTES + 1)
    except OSError as exc:
        raise ConfigurationError(f"cannot read mapping {str(path)!r}: {exc.strerror}") from exc
    if len(raw) > MAX_MAPPING_BYTES:
        raise ConfigurationError(f"mapping {str(path)!r} is larger than {MAX_MAPPING_BYTES:,} bytes")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigurationError(f"mapping {str(path)!r} is not UTF-8 text (byte {exc.start:,})") from None
    if _nesting(text) > _MAX_DEPTH:
        raise ConfigurationError(f"mapping {str(path)!r} is nested more than {_MAX_DEPTH} levels deep")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"mapping {str(path)!r} is not valid JSON (line {exc.lineno})") from exc
    return Mapping.from_dict(data, source=path.name)


def _nesting(text: str) -> int:
    """How deep brackets nest outside JSON strings (json.loads would recurse that deep)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def header_name(cell: str) -> str:
    """A header cell as a column name: surrounding spaces (as Excel users type them) are no part
    of it. The header sent to the service is made of these names too (docs/mapping.md)."""
    return cell.strip()


def header_key(cell: str) -> str:
    """What two column names are compared by: the name, case-insensitively."""
    return header_name(cell).casefold()


_CLOSEST_CANDIDATES = 1000


_NOT_LETTERS = re.compile(r"[\W_]+")


def _letters(text: str) -> str:
    return _NOT_LETTERS.sub("", text.casefold())


def closest(name: str, header: list[str]) -> str | None:
    """The header most like `name` (for "did you mean" messages), only if it reads like a column
    name: a file whose first row is data (no header) must not have its values echoed as hints.

    Bounded, so that a hostile 100,000-column header costs a linear scan: the same letters
    ('Effective Date' for EffectiveDate) first, then difflib over at most 1,000 headers of a
    length that can reach its 0.6 cutoff (within 3x of the name's).
    """
    key, letters = header_key(name), _letters(name)
    folded: dict[str, str] = {}
    for h in header:
        if not _plausible_name(h):
            continue
        if letters and len(h) >= len(letters) and _letters(h) == letters:
            return h
        f = header_key(h)
        if len(folded) < _CLOSEST_CANDIDATES and len(key) <= 3 * len(f) and len(f) <= 3 * len(key):
            folded.setdefault(f, h)
    match = difflib.get_close_matches(key, list(folded), n=1, cutoff=0.6)
    return folded[match[0]] if match else None


_NAME_LIKE = re.compile(r"[A-Za-z][A-Za-z0-9 _./()#-]{0,39}")


def _plausible_name(cell: str) -> bool:
    """Short, at most four words, letters and the odd separator: what a column name looks like."""
    text = cell.strip()
    return bool(_NAME_LIKE.fullmatch(text)) and len(text.split()) <= 4


def _documented_columns(scenario: Scenario, header: list[str]) -> dict[str, str]:
    by_fold = {header_key(h): header_name(h) for h in header}
    columns = {}
    for data_field in scenario.fields:
        for candidate in (data_field.name, *DOCUMENTED_ALIASES.get(data_field.name, ())):
            if candidate.casefold() in by_fold:
                columns[data_field.name] = by_fold[candidate.casefold()]
                break
    return columns


def describe_unplaced(fields: list[tuple[str, str | None]]) -> str:
    """'EmailAddress (closest header: 'Mail'), EffectiveDate' for messages."""
    return ", ".join(name + (f" (closest header: {near!r})" if near else "") for name, near in fields)


@dataclass(frozen=True)
class Inference:
    """What `infer_mapping` could place: the mapping, and for each scenario the fields it could not."""

    mapping: Mapping | None
    unplaced: dict[str, list[tuple[str, str | None]]]  # scenario key -> [(field, closest header)]
    note: str = ""


# A header column that only one single-scenario file would have, to tell apart scenarios whose
# required fields are the same (EmailAddress + EffectiveDate).
_TELLTALES = (
    ("employee_profile", ("EmployeeFirstName", "EmployeeLastName")),
    ("resignation", ("ResignationDate", "LastWorkingDate")),
    ("job_level_change", ("OldLevel", "NewLevel")),
    ("performance_improvement_plan", ("ImprovementRemarks", "PerformanceRating")),
    ("performance_review", ("Rating", "Remarks")),
)


def infer_mapping(header: list[str]) -> Inference:
    """The mapping the documentation's column names imply, or why there is none."""
    folded = {header_key(h) for h in header}
    placed = {key: _documented_columns(s, header) for key, s in SCENARIOS.items()}
    unplaced = {
        key: [(f.name, closest(f.name, header)) for f in s.required if f.name not in placed[key]]
        for key, s in SCENARIOS.items()
    }
    complete = [key for key in SCENARIOS if not unplaced[key]]
    scenario_column = next(
        (header_name(h) for h in header if header_key(h) == DEFAULT_SCENARIO_COLUMN.casefold()), None
    )
    if scenario_column is not None:
        if not complete:
            return Inference(None, unplaced, f"no scenario has all its required columns besides {scenario_column}")
        mappings = tuple(ScenarioMapping(SCENARIOS[k], placed[k], SCENARIOS[k].title) for k in complete)
        return Inference(Mapping(mappings, scenario_column), unplaced)
    if not complete:
        return Inference(None, unplaced, "no scenario has all its required columns")
    chosen = complete[0]
    for key, telltales in _TELLTALES:
        if key in complete and any(t.casefold() in folded for t in telltales):
            chosen = key
            break
    else:
        if "performance_review" in complete:
            chosen = "performance_review"
    note = ""
    if len(complete) > 1:
        others = ", ".join(SCENARIOS[k].title for k in complete if k != chosen)
        note = f"the header also fits {others}; give a mapping file to choose another scenario"
    return Inference(Mapping((ScenarioMapping(SCENARIOS[chosen], placed[chosen]),)), unplaced, note)
