"""The HR connector's scenarios: their data fields, which are required, and their limits.

From Microsoft's documentation (shared/seeds): field names here are the documentation's; a
connector maps each field to a column of the admin's own CSV (see `mapping`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Kind(str, Enum):
    EMAIL = "email"  # the user's UPN or e-mail address
    DATE = "date"  # ISO 8601 date and time
    TEXT = "text"


@dataclass(frozen=True)
class DataField:
    name: str
    kind: Kind = Kind.TEXT
    required: bool = False
    max_length: int | None = None


@dataclass(frozen=True)
class Scenario:
    key: str  # stable identifier used in mapping files and reports
    title: str  # the documentation's name, also its default HRScenario value
    fields: tuple[DataField, ...]

    def field(self, name: str) -> DataField:
        for candidate in self.fields:
            if candidate.name.lower() == name.lower():
                return candidate
        raise KeyError(name)

    @property
    def required(self) -> tuple[DataField, ...]:
        return tuple(f for f in self.fields if f.required)


EMAIL = DataField("EmailAddress", Kind.EMAIL, required=True)
REMARKS = DataField("Remarks", max_length=200)
RATING = DataField("Rating", max_length=25)
EFFECTIVE_DATE = DataField("EffectiveDate", Kind.DATE, required=True)

SCENARIOS: dict[str, Scenario] = {
    s.key: s
    for s in (
        Scenario(
            "resignation",
            "Resignation",
            (EMAIL, DataField("ResignationDate", Kind.DATE, True), DataField("LastWorkingDate", Kind.DATE, True)),
        ),
        Scenario(
            "job_level_change",
            "Job level change",
            (EMAIL, EFFECTIVE_DATE, REMARKS, DataField("OldLevel"), DataField("NewLevel")),
        ),
        Scenario("performance_review", "Performance review", (EMAIL, EFFECTIVE_DATE, REMARKS, RATING)),
        Scenario(
            "performance_improvement_plan", "Performance improvement plan", (EMAIL, EFFECTIVE_DATE, REMARKS, RATING)
        ),
        Scenario(
            "employee_profile",
            "Employee profile",
            (
                EMAIL,
                DataField("EmployeeFirstName", required=True),
                DataField("EmployeeLastName", required=True),
                DataField("EmployeeAddressLine1", required=True),
                DataField("EmployeeAddressLine2"),
                DataField("EmployeeCity"),
                DataField("EmployeeState"),
                DataField("EmployeeZipCode", required=True),
                DataField("EmployeeCountry"),
                DataField("EmployeeDepartment"),
                DataField("EmployeeType"),
                DataField("EmployeeRole"),
            ),
        ),
    )
}

# Column names the documentation's own samples use for a field, besides the field's name.
DOCUMENTED_ALIASES: dict[str, tuple[str, ...]] = {
    "EmployeeAddressLine1": ("EmployeeAddLine1",),
    "EmployeeAddressLine2": ("EmployeeAddLine2",),
    "EmployeeDepartment": ("EmployeeDept",),
    "Remarks": ("ImprovementRemarks",),
    "Rating": ("PerformanceRating",),
}

DEFAULT_SCENARIO_COLUMN = "HRScenario"
