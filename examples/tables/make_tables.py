"""Write the example claims tables from the example case files (run from anywhere; needs DuckDB).

    python examples/tables/make_tables.py [OUT_DIR]     # OUT_DIR defaults to this folder

- claims.parquet: the line-table layout, one row per service line with the case columns
  repeated. Three example cases, two bad ones, and the ALIF case's last line moved to the end of
  the table (a case's rows need not be together).
- cases.parquet + lines.parquet: the same claims in the case-table + line-table layout.

expected.yaml says what `ionm-logic batch` must give for them, and why.
"""
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from ionm_logic.tables import CASE_COLUMNS, LINE_COLUMNS, rows_of_case, write_rows  # noqa: E402

CASES = ["alif-plif-l5-s1.json", "c5-c6-acdf-myelopathy-in-room.json", "carotid-endarterectomy-in-room.json"]


def cases() -> list:
    docs = [json.loads((HERE.parent / name).read_text()) for name in CASES]
    # A lumbar fusion billed with an operated level that does not exist.
    bad_level = json.loads((HERE.parent / "tethered-cord-l4-l5-fusion.json").read_text())
    bad_level.update(case_id="fusion-with-level-l7")
    bad_level["procedure"] = {**bad_level["procedure"], "levels": ["L5", "L7"]}
    # The cervical case again, its second line billed with zero units.
    zero_units = json.loads((HERE.parent / "c5-c6-acdf-myelopathy-in-room.json").read_text())
    zero_units.update(case_id="acdf-with-zero-units")
    zero_units["services"][1] = {**zero_units["services"][1], "units": 0}
    return docs + [bad_level, zero_units]


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE
    docs = cases()
    rows = [row for doc in docs for row in rows_of_case(doc)]
    rows.append(rows.pop(5))  # the ALIF case's sixth line (95941) goes last
    write_rows(rows, str(out / "claims.parquet"))
    case_rows = [{c: r[c] for c in CASE_COLUMNS} for doc in docs for r in rows_of_case(doc)[:1]]
    line_rows = [{"case_id": doc["case_id"], **{c: r[c] for c in LINE_COLUMNS}} for doc in docs for r in rows_of_case(doc)]
    write_rows(case_rows, str(out / "cases.parquet"), list(CASE_COLUMNS))
    write_rows(line_rows, str(out / "lines.parquet"), ["case_id", *LINE_COLUMNS])
    print(f"claims.parquet: {len(rows)} rows; cases.parquet: {len(case_rows)}; lines.parquet: {len(line_rows)}")


if __name__ == "__main__":
    main()
