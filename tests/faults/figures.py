"""The figures each fault test reports: N submitted, N stored, 0 duplicates, 0 stuck.

Printed as one row per case (``pytest -s`` shows it as it happens; the terminal summary
prints the table: each row rides on its test's report, ``user_properties``, so the table is
whole when pytest-xdist runs the cases in other processes). With
``URLTESTER_FAULTS_REPORT=path`` each row is also appended to that file as a JSON line,
which is how ``scripts/bench-faults`` collects them.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass


@dataclass
class Row:
    case: str
    submitted: int
    stored: int
    duplicates: int
    stuck: int
    recover_s: float
    note: str = ""

    @property
    def clean(self) -> bool:
        return self.submitted == self.stored and self.duplicates == 0 and self.stuck == 0


ROWS: list[Row] = []  # recorded in this process
FIGURES = "fault figures"  # the user_properties key each row is reported under
HEADER = f"{'case':<26} {'submitted':>9} {'stored':>7} {'duplicates':>10} {'stuck':>5} {'recover s':>9}  note"


def line(row: Row) -> str:
    return (f"{row.case:<26} {row.submitted:>9} {row.stored:>7} {row.duplicates:>10} {row.stuck:>5} "
            f"{row.recover_s:>9.1f}  {row.note}")


def table(rows: list[Row]) -> list[str]:
    return [HEADER, *(line(r) for r in rows)]


def record(row: Row) -> None:
    ROWS.append(row)
    print(f"\n{HEADER}\n{line(row)}", flush=True)
    path = os.environ.get("URLTESTER_FAULTS_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(asdict(row)) + "\n")
