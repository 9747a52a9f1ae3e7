"""Claims tables through DuckDB: both layouts become cases whose pointers name table, row and column;
bad rows are error records; `-o out.parquet` writes one row per line. Every table here is a real
Parquet or DuckDB file the test writes and `ionm-logic batch` reads through DuckDB."""
import json
import random
import subprocess
import sys

import duckdb
import pytest
import yaml

from conftest import ROOT, walk
from ionm_logic.golden import compare
from ionm_logic.tables import CASE_COLUMNS, LINE_COLUMNS, rows_of_case, write_rows

CLI = [sys.executable, "-m", "ionm_logic"]
TABLES = ROOT / "examples" / "tables"
EXPECTED = yaml.safe_load((TABLES / "expected.yaml").read_text())
LAYOUTS = {"claims.parquet": ["claims.parquet"], "cases.parquet": ["cases.parquet", "--lines", "lines.parquet"]}


def batch(args, cwd, check=True):
    out = subprocess.run(CLI + ["batch", *args], cwd=cwd, capture_output=True, text=True)
    if check:
        assert out.returncode == 0, out.stderr
    return out


def records(text):
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """The shipped example tables, written afresh by their generator into a scratch folder."""
    folder = tmp_path_factory.mktemp("example")
    subprocess.run([sys.executable, str(TABLES / "make_tables.py"), str(folder)], check=True, capture_output=True)
    return folder


def test_the_shipped_example_tables_are_what_their_generator_writes(example):
    for name in ("claims.parquet", "cases.parquet", "lines.parquet"):
        shipped = duckdb.sql(f"SELECT * FROM read_parquet('{TABLES / name}')").fetchall()
        fresh = duckdb.sql(f"SELECT * FROM read_parquet('{example / name}')").fetchall()
        assert shipped == fresh, name


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_example_tables_decide_as_their_golden_cases_and_point_into_the_tables(layout):
    out = batch(LAYOUTS[layout], TABLES)
    got = {r["case_id"]: r for r in records(out.stdout)}
    assert [r["case_id"] for r in records(out.stdout)] == \
        [c["case_id"] for c in EXPECTED["decided"]] + [e["case_id"] for e in EXPECTED["errors"]]
    assert "5 record(s), 3 decided, 2 error(s)" in out.stderr
    for spec in EXPECTED["decided"]:
        result = got[spec["case_id"]]
        golden = yaml.safe_load((TABLES / spec["golden"]).read_text())
        expect = {**golden["expect"], "lines": [{k: v for k, v in line.items() if k != "missing"}
                                                for line in golden["expect"]["lines"]]}
        assert compare(result, expect) == [], spec["case_id"]
        missing = [f["pointer"] for line in result["lines"] for gap in line["missing_documentation"] for f in gap["fields"]]
        assert sorted(set(missing)) == spec.get("missing", {}).get(layout, []), spec["case_id"]
        for line in result["lines"]:
            if line["code"] == "95941" and "code_of_95941" in spec:
                leaves = [n for f in line["findings"] for n in walk(f["proof"]) if n["node"] == "case"
                          and n["atom"].startswith("billed_line(")]
                assert {n["pointer"] for n in leaves} == {spec["code_of_95941"][layout]}
    for spec in EXPECTED["errors"]:
        error = got[spec["case_id"]]
        assert error["schema"] == "ionm-logic/error/v1"
        assert error["error"]["pointer"] == spec["pointer"][layout]
        assert spec["message"] in error["error"]["message"]


def _cell(pointer):
    """The value a table pointer names, read back through DuckDB."""
    table, rest = pointer.split("#row=")
    row, _, column = rest.partition("/column=")
    parts = column.split("/") if column else []
    got = duckdb.sql(f"SELECT * FROM read_parquet('{TABLES / table}', file_row_number = true) "
                     f"WHERE file_row_number = {int(row)}").fetchall()
    assert len(got) == 1, pointer
    got = got[0]
    if not parts:
        return got
    names = [d[0] for d in duckdb.sql(f"SELECT * FROM read_parquet('{TABLES / table}', file_row_number = true) "
                                      "LIMIT 0").description]
    value = got[names.index(parts[0])]
    for index in parts[1:]:
        value = value[int(index)] if isinstance(value, list) else value[index]
    return value


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_case_leaf_names_a_table_cell_holding_its_value(layout):
    for result in records(batch(LAYOUTS[layout], TABLES).stdout):
        if result["schema"] != "ionm-logic/determination/v1":
            continue
        for line in result["lines"]:
            for item in line["findings"] + line["considerations"]:
                for node in walk(item["proof"]):
                    if node["node"] != "case":
                        continue
                    assert node["pointer"].split("#")[0] in ("claims.parquet", "cases.parquet", "lines.parquet")
                    value = _cell(node["pointer"])
                    assert value is not None, node
                    if not isinstance(value, tuple):
                        shown = str(value).lower() if isinstance(value, bool) else str(value)
                        assert shown in node["atom"], (node["pointer"], value, node["atom"])


def test_parquet_output_has_one_row_per_line_and_one_per_bad_record(tmp_path):
    target = tmp_path / "out.parquet"
    batch(["claims.parquet", "-o", str(target)], TABLES)
    jsonl = records(batch(["claims.parquet"], TABLES).stdout)
    rows = duckdb.sql(f"SELECT * FROM read_parquet('{target}')").fetchall()
    names = [d[0] for d in duckdb.sql(f"SELECT * FROM read_parquet('{target}') LIMIT 0").description]
    rows = [dict(zip(names, r)) for r in rows]
    for column in ("case_id", "payer", "policy_version", "code", "units", "determination", "deciding_rules",
                   "missing_documentation", "kb_sha256"):
        assert column in names
    expected = []
    for number, result in enumerate(jsonl, 1):
        if result["schema"] == "ionm-logic/error/v1":
            expected.append((number, result["case_id"], None, "error", result["error"]["pointer"]))
            continue
        for line in result["lines"]:
            expected.append((number, result["case_id"], line["code"], line["determination"], None))
    assert [(r["record"], r["case_id"], r["code"], r["determination"], r["error_pointer"]) for r in rows] == expected
    decided = [r for r in rows if r["determination"] != "error"]
    assert len(decided) == 13 and len(rows) == 15
    assert {r["kb_sha256"] for r in decided} == {jsonl[0]["knowledge_base"]["sha256"]}
    by_line = {(r["case_id"], r["code"]): r for r in decided}
    remote_time = by_line[("alif-plif-l5-s1", "95941")]
    # The headline documentation_insufficient comes from the concurrent-cases rule alone; the
    # "no underlying modality is necessary" finding (not_medically_necessary) is on the line too
    # but does not decide it (documentation insufficient outranks it).
    assert remote_time["deciding_rules"] == ["PACK-CONCURRENT-CASES-UNDOCUMENTED"]
    assert remote_time["finding_rules"] == ["PACK-CONCURRENT-CASES-UNDOCUMENTED", "PACK-TIME-NO-NECESSARY-MODALITY"]
    assert remote_time["units"] == 4 and remote_time["source_row"] == "claims.parquet#row=19"
    assert "how many cases the interpreting professional covered" in remote_time["missing_documentation"]
    assert remote_time["missing_fields"] == ["monitoring_professional_concurrent_cases"]
    assert by_line[("acdf-c5-c6-myelopathy", "95938")]["missing_documentation"] is None
    errors = [r for r in rows if r["determination"] == "error"]
    assert [e["error_reason"] for e in errors] == ["procedure_levels: unknown vertebral level",
                                                   "units: input should be greater than or equal to"]


def _claims(n, seed=7):
    path = ROOT / "benchmarks" / "generate_cases.py"
    out = subprocess.run([sys.executable, str(path), str(n), "/dev/stdout", "--seed", str(seed)],
                         capture_output=True, text=True, check=True).stdout
    return [json.loads(line) for line in out.splitlines()]


def test_generated_claims_decide_the_same_from_a_shuffled_parquet_table_as_from_json_lines(tmp_path):
    docs = _claims(150)
    (tmp_path / "cases.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    rows = [r for d in docs for r in rows_of_case(d)]
    random.Random(3).shuffle(rows)  # a case's rows scattered over the table
    write_rows(rows, str(tmp_path / "claims.parquet"))
    from_json = records(batch(["cases.jsonl"], tmp_path).stdout)
    from_table = records(batch(["claims.parquet"], tmp_path).stdout)
    first_row = {}
    for i, r in enumerate(rows):
        first_row.setdefault(r["case_id"], i)
    # Cases come in the order of their first row; lines keep their row order within the case.
    order = sorted(first_row, key=first_row.get)
    assert [r["case_id"] for r in from_table] == order
    table_by_id = {r["case_id"]: r for r in from_table}
    for doc, result in zip(docs, from_json):
        table = table_by_id[doc["case_id"]]
        codes = [r["code"] for r in rows if r["case_id"] == doc["case_id"]]
        assert [l["code"] for l in table["lines"]] == codes
        want = {l["code"]: (l["determination"], sorted(f["rule"] for f in l["findings"]), len(l["missing_documentation"]))
                for l in result["lines"]}
        got = {l["code"]: (l["determination"], sorted(f["rule"] for f in l["findings"]), len(l["missing_documentation"]))
               for l in table["lines"]}
        assert got == want, doc["case_id"]
        assert table["overall"]["determination"] == result["overall"]["determination"]


def test_a_duckdb_query_and_a_case_table_joined_to_a_line_table(tmp_path):
    docs = _claims(30, seed=11)
    db = tmp_path / "claims.duckdb"
    flat = tmp_path / "flat.parquet"
    write_rows([r for d in docs for r in rows_of_case(d)], str(flat))
    con = duckdb.connect(str(db))
    con.execute(f"CREATE TABLE claims AS SELECT * FROM read_parquet('{flat}')")
    con.execute("CREATE TABLE cases AS SELECT DISTINCT ON (case_id) * EXCLUDE (code, units, modality) FROM claims "
                "ORDER BY case_id")
    con.execute("CREATE TABLE lines AS SELECT case_id, code, units, modality FROM claims")
    con.close()
    query = "SELECT * FROM claims WHERE payer = 'cms-lcd-l34623' ORDER BY case_id DESC"
    got = records(batch(["--db", str(db), "--sql", query], tmp_path).stdout)
    medicare = sorted((d for d in docs if d["payer"] == "cms-lcd-l34623"), key=lambda d: d["case_id"], reverse=True)
    assert [r["case_id"] for r in got] == [d["case_id"] for d in medicare] and got
    first = got[0]
    leaf = next(n for f in first["lines"][0]["findings"] for n in walk(f["proof"]) if n["node"] == "case"
                and n["atom"].startswith("applies_policy("))
    assert leaf["pointer"] == "sql#row=0/column=payer"  # row 0 of the query's result
    joined = records(batch(["--db", str(db)], tmp_path).stdout)
    assert [r["case_id"] for r in joined] == sorted(d["case_id"] for d in docs)
    one = joined[0]
    code_leaf = next(n for f in one["lines"][0]["findings"] for n in walk(f["proof"]) if n["node"] == "case"
                     and n["atom"].startswith("billed_line("))
    assert code_leaf["pointer"].startswith("lines#row=") and code_leaf["pointer"].endswith("/column=code")


def _row(**changes):
    doc = json.loads((ROOT / "examples" / "c5-c6-acdf-myelopathy-in-room.json").read_text())
    row = rows_of_case(doc)[0]
    row.update(changes)
    return row


def test_bad_rows_are_error_records_and_the_others_still_run(tmp_path):
    rows = [
        _row(case_id="good"),
        _row(case_id=None),                                   # row 1: no case id
        _row(case_id="no-code", code=None),                   # row 2
        _row(case_id="clash"), _row(case_id="clash", payer="anthem-cg-surg-104"),  # rows 3, 4
        _row(case_id="null-lists", procedure_approaches=None, procedure_instrumentation=None,
             procedure_codes=None, diagnoses=None, monitoring_report_interventions=None),  # row 5
        _row(case_id="null-level", procedure_levels=["C5", None]),  # row 6
        _row(case_id="undocumented", monitoring_professional_concurrent_cases=None),  # row 7
    ]
    write_rows(rows, str(tmp_path / "t.parquet"))
    out = batch(["t.parquet"], tmp_path)
    got = {r["case_id"]: r for r in records(out.stdout)}
    assert "7 record(s), 3 decided, 4 error(s)" in out.stderr
    assert got[None]["error"]["pointer"] == "t.parquet#row=1/column=case_id"
    assert got["no-code"]["error"] == {"pointer": "t.parquet#row=2/column=code", "message": "required field is missing"}
    assert got["clash"]["error"]["pointer"] == "t.parquet#row=4/column=payer"
    assert "row 3" in got["clash"]["error"]["message"]
    assert got["null-level"]["error"]["pointer"] == "t.parquet#row=6/column=procedure_levels/1"
    # A null list is an empty one: no diagnosis, no approach; the case still decides, as the
    # same case file without those lists does.
    doc = json.loads((ROOT / "examples" / "c5-c6-acdf-myelopathy-in-room.json").read_text())
    for key in ("approaches", "instrumentation", "codes"):
        doc["procedure"].pop(key)
    doc["diagnoses"] = []
    doc["monitoring"]["report"].pop("interventions")
    doc["services"] = doc["services"][:1]
    (tmp_path / "same.jsonl").write_text(json.dumps({**doc, "case_id": "null-lists"}) + "\n")
    same = records(batch(["same.jsonl"], tmp_path).stdout)[0]
    assert [(l["determination"], [f["rule"] for f in l["findings"]]) for l in got["null-lists"]["lines"]] == \
        [(l["determination"], [f["rule"] for f in l["findings"]]) for l in same["lines"]]
    # A null scalar is "not documented", not false: the in-room time's concurrent-case count.
    assert got["undocumented"]["schema"] == "ionm-logic/determination/v1"


def test_table_problems_that_stop_everything_name_the_column_and_exit_2(tmp_path):
    write_rows([_row()], str(tmp_path / "extra.parquet"), list(CASE_COLUMNS) + list(LINE_COLUMNS) + ["claim_amount"])
    out = batch(["extra.parquet"], tmp_path, check=False)
    assert out.returncode == 2 and "extra.parquet#column=claim_amount: unknown column" in out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""
    write_rows([_row()], str(tmp_path / "nocode.parquet"), list(CASE_COLUMNS))
    out = batch(["nocode.parquet"], tmp_path, check=False)
    assert out.returncode == 2 and "nocode.parquet#column=code: required column is missing" in out.stderr
    db = tmp_path / "x.duckdb"
    duckdb.connect(str(db)).close()
    out = batch(["--db", str(db), "--sql", "SELECT * FROM nowhere"], tmp_path, check=False)
    assert out.returncode == 2 and "nowhere" in out.stderr and "Traceback" not in out.stderr


def test_orphan_lines_and_repeated_case_rows_in_the_two_table_layout(tmp_path):
    case = {c: v for c, v in _row(case_id="a").items() if c in CASE_COLUMNS}
    write_rows([case, {**case, "case_id": "b"}, {**case}], str(tmp_path / "cases.parquet"), list(CASE_COLUMNS))
    write_rows([{"case_id": "a", "code": "95938"}, {"case_id": "zzz", "code": "95938"}, {"case_id": "b", "code": "95939"}],
               str(tmp_path / "lines.parquet"), ["case_id", *LINE_COLUMNS])
    got = records(batch(["cases.parquet", "--lines", "lines.parquet"], tmp_path).stdout)
    assert [(r["case_id"], r["schema"].split("/")[1]) for r in got] == \
        [("a", "determination"), ("b", "determination"), ("a", "error"), ("zzz", "error")]
    assert got[2]["error"]["pointer"] == "cases.parquet#row=2/column=case_id" and "row 0" in got[2]["error"]["message"]
    assert got[3]["error"]["pointer"] == "lines.parquet#row=1/column=case_id"
    assert "no row of cases.parquet has case_id 'zzz'" in got[3]["error"]["message"]


def test_a_parquet_output_never_overwrites_its_input(tmp_path):
    write_rows([_row()], str(tmp_path / "t.parquet"))
    before = (tmp_path / "t.parquet").read_bytes()
    out = batch(["t.parquet", "-o", "t.parquet"], tmp_path, check=False)
    assert out.returncode == 2 and "never overwritten" in out.stderr
    assert (tmp_path / "t.parquet").read_bytes() == before


def test_explain_and_json_lines_batches_do_not_import_duckdb_or_dask(tmp_path):
    (tmp_path / "c.jsonl").write_text((ROOT / "examples" / "alif-plif-l5-s1.json").read_text().replace("\n", "") + "\n")
    probe = ("import sys\nfrom click.testing import CliRunner\nfrom ionm_logic.cli import main\n"
             "for argv in ([%r, %r], ['batch', %r, '-o', %r]):\n"
             "    assert CliRunner().invoke(main, argv).exit_code == 0\n"
             "print(sorted(m for m in ('duckdb', 'dask', 'distributed', 'pyarrow') if m in sys.modules))\n") % (
        "explain", str(ROOT / "examples" / "alif-plif-l5-s1.json"), str(tmp_path / "c.jsonl"), str(tmp_path / "o.jsonl"))
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_docs_name_every_column_read_and_written():
    from ionm_logic.tables import OUTPUT_COLUMNS

    text = (ROOT / "docs" / "tables.md").read_text()
    for column in list(CASE_COLUMNS) + list(LINE_COLUMNS) + [name for name, _t in OUTPUT_COLUMNS]:
        assert f"`{column}`" in text, column


def test_a_column_of_the_wrong_type_is_each_rows_error_at_that_column(tmp_path):
    write_rows([_row(case_id="a"), _row(case_id="b")], str(tmp_path / "t.parquet"))
    db = tmp_path / "t.duckdb"
    con = duckdb.connect(str(db))
    con.execute(f"CREATE TABLE claims AS SELECT * FROM read_parquet('{tmp_path / 't.parquet'}')")
    con.close()
    query = ("SELECT * REPLACE (CASE WHEN case_id = 'b' THEN CAST(units AS VARCHAR) END AS units, "
             "CAST(date_of_service AS TIMESTAMP) AS date_of_service) FROM claims ORDER BY case_id")
    got = records(batch(["--db", str(db), "--sql", query], tmp_path).stdout)
    # A timestamp is not a date of service (case/v1 takes an ISO date), and text is not a count.
    assert got[0]["error"]["pointer"] == "sql#row=0/column=date_of_service"
    assert got[1]["error"]["message"].count("sql#row=1/column=") == 2
    assert "sql#row=1/column=units" in got[1]["error"]["message"]


from hypothesis import HealthCheck, given, settings  # noqa: E402

from strategies import cases  # noqa: E402


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=cases())
def test_a_case_written_as_table_rows_reads_back_as_the_same_case(tmp_path, doc):
    from ionm_logic.case import parse_case
    from ionm_logic.tables import read_records, source_for

    path = tmp_path / "one.parquet"
    write_rows(rows_of_case(doc), str(path))
    (record,) = list(read_records(source_for(str(path), None, None, None)))
    # Diagnosis texts are display-only and a code list does not carry them.
    plain = {**doc, "diagnoses": [{"code": d["code"]} for d in doc["diagnoses"]]}
    assert parse_case(record.raw) == parse_case(json.dumps(plain))
    assert record.cells("/services/0/code") == f"{path}#row=0/column=code"
