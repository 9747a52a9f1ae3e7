"""Claims tables in and out through DuckDB: table rows become case records, decisions a Parquet table.

Two layouts are read (docs/tables.md): one table with a row per service line and the case columns
repeated on each, or a case table joined to a line table by `case_id`. Columns are the case/v1
fields with their path joined by `_` (`monitoring_professional_concurrent_cases`); a service
line's columns are `code`, `units` and `modality`. Every record keeps where each of its values
came from, so a pointer in a proof, a gap or an error names the table, the row and the column:
`claims.parquet#row=12/column=code` (rows count from 0, as DuckDB's `file_row_number` does).

DuckDB is an optional extra (`[tables]`), imported only here and only when a table is read or
written; JSON-lines batches never load it.
"""
from __future__ import annotations

import datetime
import json
import os
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from pydantic import BaseModel

from .case import Case, Service
from .errors import InputError

KEY = "case_id"
ROW = "__row"


def _columns() -> dict:
    """Column name -> case/v1 path, derived from the case model so the two cannot drift apart.

    A nested object's fields are flattened (`clinical_myelopathy`); a list stays one list column
    (`procedure_levels`, `diagnoses`, `history`); `schema` is implied and `services` is the lines."""
    out = {}

    def walk(model, path):
        for name, info in model.model_fields.items():
            alias = info.alias or name
            if (model is Case and alias in ("schema", "services")):
                continue
            kind = info.annotation
            inner = [a for a in typing.get_args(kind) if a is not type(None)]
            sub = inner[0] if inner and len(inner) == 1 and typing.get_origin(kind) is typing.Union else kind
            if isinstance(sub, type) and issubclass(sub, BaseModel):
                walk(sub, path + (alias,))
            else:
                out["_".join(path + (alias,))] = path + (alias,)

    walk(Case, ())
    return out


CASE_COLUMNS = _columns()
LINE_COLUMNS = tuple(Service.model_fields)  # code, units, modality
# Lists of objects a table may also give as a list of their first field's text (ICD-10-CM codes).
FLAT_LISTS = {"diagnoses": "code"}


def _duckdb():
    try:
        import duckdb
    except ImportError:  # pragma: no cover - the [tables] extra is part of [test]
        raise InputError([("", "reading or writing tables needs DuckDB: pip install 'ionm-logic[tables]'")]) from None
    return duckdb


def is_table(path: str) -> bool:
    return str(path).lower().endswith(".parquet")


# --- where values came from ----------------------------------------------------------------------

@dataclass(frozen=True)
class Where:
    """Turns a record's JSON pointers into table locations: `TABLE#row=N/column=C[/index...]`."""

    case_table: str
    case_row: int
    line_table: str
    line_rows: tuple
    flat: frozenset = frozenset()   # list columns given as plain text (FLAT_LISTS)

    def __call__(self, ptr: str) -> str:
        table, row, column, rest = self._locate(ptr)
        out = f"{table}#row={row}"
        if column:
            out += f"/column={column}" + "".join(f"/{p}" for p in rest)
        return out

    def column(self, ptr: str) -> str:
        """The column a pointer (a JSON one, or one already in table terms) falls in, with no row:
        what an error reason or a missing field is called."""
        if "#row=" in ptr:
            return ptr.split("/column=", 1)[1].split("/", 1)[0] if "/column=" in ptr else "(row)"
        return self._locate(ptr)[2] or "(row)"

    def _locate(self, ptr: str):
        parts = [p.replace("~1", "/").replace("~0", "~") for p in ptr.split("/")[1:]] if ptr else []
        if parts[:1] == ["services"] and len(parts) >= 2 and parts[1].isdigit() and int(parts[1]) < len(self.line_rows):
            return self.line_table, self.line_rows[int(parts[1])], "/".join(parts[2:3]), parts[3:]
        if parts[:1] == ["services"]:
            return self.case_table, self.case_row, "", []
        for n in range(len(parts), 0, -1):
            column = "_".join(parts[:n])
            if column in CASE_COLUMNS:
                rest = parts[n:]
                if column in self.flat and rest[-1:] == [FLAT_LISTS[column]]:
                    rest = rest[:-1]
                return self.case_table, self.case_row, column, rest
        return self.case_table, self.case_row, "", []

    def relocate(self, result: dict) -> dict:
        """A copy of a determination with every case leaf's and gap field's pointer in table terms;
        the line's own `pointer` stays its identity in the case (`/services/N`)."""
        def node(n):
            out = dict(n)
            if n.get("node") == "case" and "pointer" in n:
                out["pointer"] = self(n["pointer"])
            if n.get("children"):
                out["children"] = [node(c) for c in n["children"]]
            return out

        def item(i):
            return {**i, "proof": node(i["proof"])} if "proof" in i else i

        lines = []
        for line in result["lines"]:
            lines.append({**line, "findings": [item(f) for f in line["findings"]],
                          "considerations": [item(c) for c in line["considerations"]],
                          "missing_documentation": [
                              {**gap, "fields": [{**f, "pointer": self(f["pointer"])} for f in gap["fields"]]}
                              for gap in line["missing_documentation"]]})
        return {**result, "lines": lines, "observations": [item(o) for o in result["observations"]]}


# --- reading ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Relation:
    """A table to read: the name pointers use, and DuckDB SQL giving its rows with a `__row` number."""

    name: str
    sql: str
    params: tuple = ()


def parquet(path: str) -> Relation:
    if not Path(path).is_file():
        raise InputError([("", "no such file")], path)
    return Relation(path, f"SELECT * EXCLUDE (file_row_number), file_row_number AS {ROW} "
                          "FROM read_parquet(?, file_row_number = true)", (path,))


@dataclass
class Source:
    """A table source for `batch`: one line table, or a case table and a line table."""

    lines: Relation
    cases: Optional[Relation] = None
    database: Optional[str] = None
    query: Optional[str] = None   # --sql: materialized first, numbered in its result order

    def inputs(self) -> list:
        return [p for p in (self.database, *(r.params[0] for r in (self.lines, self.cases) if r and r.params)) if p]


def source_for(path: Optional[str], db: Optional[str], sql: Optional[str], lines: Optional[str]) -> Source:
    """The table source the `batch` arguments name (see docs/tables.md for the layouts)."""
    if db is not None:
        if path or lines:
            raise InputError([("", "give --db with --sql (one line table) or alone (tables cases and lines), "
                                   "not with a file")])
        if not Path(db).is_file():
            raise InputError([("", "no such file")], db)
        if sql is not None:
            return Source(Relation("sql", f"SELECT rowid AS {ROW}, * FROM __query"), database=db, query=sql)
        return Source(Relation("lines", f"SELECT rowid AS {ROW}, * FROM lines"),
                      Relation("cases", f"SELECT rowid AS {ROW}, * FROM cases"), database=db)
    if sql is not None:
        raise InputError([("", "--sql needs --db FILE.duckdb")])
    if lines is not None:
        return Source(parquet(lines), parquet(path))
    return Source(parquet(path))


def _connect(source: Source):
    duckdb = _duckdb()
    try:
        con = duckdb.connect(source.database, read_only=True) if source.database else duckdb.connect()
        if source.query is not None:
            # A temporary table keeps the query's result order as its rowid, so "row N" means the
            # query's Nth row however DuckDB plans the grouping below.
            con.execute(f"CREATE TEMPORARY TABLE __query AS {source.query}")
    except duckdb.Error as exc:
        raise InputError([("", f"DuckDB: {exc}")], source.database or "") from None
    return con


def _names(con, rel: Relation) -> list:
    duckdb = _duckdb()
    try:
        return [d[0] for d in con.execute(f"SELECT * FROM ({rel.sql}) LIMIT 0", rel.params).description]
    except duckdb.Error as exc:
        raise InputError([("", f"cannot read the table: {exc}")], rel.name) from None


def _check_columns(names: list, allowed: set, required: tuple, table: str) -> None:
    problems = []
    for name in names:
        if name != ROW and name not in allowed:
            problems.append((f"{table}#column={name}", "unknown column; known: " + ", ".join(sorted(allowed))))
    for name in required:
        if name not in names:
            problems.append((f"{table}#column={name}", "required column is missing"))
    if problems:
        raise InputError(problems)


def _grouped_sql(source: Source, con) -> tuple:
    """SQL giving every input row once, a case's rows together, cases in order of their first row,
    with `__case_row` / `__line_row` numbers; and the case and line columns present."""
    line_names = _names(con, source.lines)
    if source.cases is None:
        _check_columns(line_names, set(CASE_COLUMNS) | set(LINE_COLUMNS), (KEY, "code"), source.lines.name)
        case_cols = [n for n in line_names if n in CASE_COLUMNS]
        line_cols = [n for n in line_names if n in LINE_COLUMNS]
        body = ", ".join(_q(c) for c in case_cols + line_cols)
        sql = (f"SELECT {ROW} AS __case_row, {ROW} AS __line_row, "
               f"CASE WHEN {KEY} IS NULL THEN {ROW} ELSE min({ROW}) OVER (PARTITION BY {KEY}) END AS __group, "
               f"{body} FROM ({source.lines.sql}) ORDER BY __group, {ROW}")
        return sql, list(source.lines.params), case_cols, line_cols
    case_names = _names(con, source.cases)
    _check_columns(case_names, set(CASE_COLUMNS), (KEY,), source.cases.name)
    _check_columns(line_names, {KEY} | set(LINE_COLUMNS), (KEY, "code"), source.lines.name)
    case_cols = [n for n in case_names if n in CASE_COLUMNS]
    line_cols = [n for n in line_names if n in LINE_COLUMNS]
    # A case row joins its lines only as the first row with its case_id: a repeated case_id is an
    # error on the later row, and a line whose case_id no case row has is an error of its own.
    sql = (f"WITH c AS (SELECT *, CASE WHEN {KEY} IS NULL THEN {ROW} ELSE min({ROW}) OVER (PARTITION BY {KEY}) END "
           f"AS __first FROM ({source.cases.sql})), "
           f"l AS (SELECT {ROW} AS __lrow, {KEY} AS __lkey, {', '.join(_q(c) for c in line_cols)} FROM ({source.lines.sql})) "
           f"SELECT c.{ROW} AS __case_row, l.__lrow AS __line_row, c.__first AS __first, l.__lkey AS __line_case, "
           f"{', '.join('c.' + _q(c) for c in case_cols)}, {', '.join('l.' + _q(c) for c in line_cols)} "
           f"FROM c FULL JOIN l ON c.{KEY} = l.__lkey AND c.{ROW} = c.__first "
           f"ORDER BY c.{ROW} IS NULL, c.{ROW}, l.__lrow")
    return sql, list(source.cases.params) + list(source.lines.params), case_cols, line_cols


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def count_cases(source: Source) -> int:
    """How many records a table source gives (for the progress bar)."""
    con = _connect(source)
    try:
        sql, params, _c, _l = _grouped_sql(source, con)
        if source.cases is None:
            return con.execute(f"SELECT count(DISTINCT __group) FROM ({sql})", params).fetchone()[0]
        return con.execute(f"SELECT count(DISTINCT coalesce(__case_row::VARCHAR, 'l' || __line_row)) FROM ({sql})",
                           params).fetchone()[0]
    finally:
        con.close()


def read_records(source: Source, batch_rows: int = 2048) -> Iterator:
    """Records in order, one per case (and one per orphan or repeated row), streamed from DuckDB."""
    from .batch import Record

    con = _connect(source)
    sql, params, case_cols, line_cols = _grouped_sql(source, con)
    two = source.cases is not None
    case_table = source.cases.name if two else source.lines.name
    try:
        cursor = con.execute(sql, params)
        names = [d[0] for d in cursor.description]
        number, group, key = 0, [], None
        while True:
            rows = cursor.fetchmany(batch_rows)
            for values in rows:
                row = dict(zip(names, values))
                this = _group_key(row, two)
                if group and this != key:
                    number += 1
                    yield _record(number, group, case_cols, line_cols, case_table, source.lines.name, two, Record)
                    group = []
                key = this
                group.append(row)
            if not rows:
                break
        if group:
            number += 1
            yield _record(number, group, case_cols, line_cols, case_table, source.lines.name, two, Record)
    finally:
        con.close()


def _group_key(row: dict, two: bool):
    if not two:
        return ("case", row["__group"])
    if row["__case_row"] is None:
        return ("orphan", row["__line_row"])
    return ("case", row["__case_row"])


def _record(number, rows, case_cols, line_cols, case_table, line_table, two, Record):
    first = rows[0]
    if two and first["__case_row"] is None:
        where = Where(line_table, first["__line_row"], line_table, (first["__line_row"],))
        problem = ("/services/0/case_id", f"no row of {case_table} has case_id {first['__line_case']!r}")
        return Record(number, None, line_table, _problem_doc(first.get("__line_case")), problem=problem[1],
                      problem_at=problem[0], cells=where)
    line_rows = tuple(r["__line_row"] for r in rows if r["__line_row"] is not None)
    flat = frozenset(c for c in FLAT_LISTS if c in case_cols and any(isinstance(v, str) for v in first[c] or ()))
    where = Where(case_table, first["__case_row"], line_table, line_rows, flat)
    if two and first["__first"] != first["__case_row"]:
        return Record(number, None, case_table, _problem_doc(first[KEY]), cells=where, problem_at=f"/{KEY}",
                      problem=f"case_id {first[KEY]!r} is also on row {first['__first']} of {case_table}")
    if not two:
        # The case columns are repeated on every line row: they must agree.
        for r in rows[1:]:
            for c in case_cols:
                if r[c] != first[c]:
                    clash = Where(case_table, r["__case_row"], line_table, line_rows, flat)
                    return Record(number, None, case_table, _problem_doc(first[KEY]), cells=clash,
                                  problem_at=_pointer_of(c),
                                  problem=f"differs from row {first['__case_row']}, the case's first row")
    doc = {"schema": "ionm-logic/case/v1"}
    for c in case_cols:
        _put(doc, CASE_COLUMNS[c], _value(first[c], FLAT_LISTS.get(c)))
    services = []
    for r in rows:
        if r["__line_row"] is None:
            continue
        services.append({k: _value(r[k]) for k in line_cols if r[k] is not None})
    doc["services"] = services
    return Record(number, None, case_table, json.dumps(doc, ensure_ascii=False).encode(), cells=where)


def _pointer_of(column: str) -> str:
    return "/" + "/".join(CASE_COLUMNS[column])


def _problem_doc(case_id) -> bytes:
    return json.dumps({"case_id": case_id if isinstance(case_id, str) else None}).encode()


def _put(doc: dict, path: tuple, value) -> None:
    """Set a case field from a column; null is "not documented" (absent), a null list is empty."""
    if value is None:
        return
    target = doc
    for part in path[:-1]:
        target = target.setdefault(part, {})
    target[path[-1]] = value


def _value(value, flat_field: Optional[str] = None):
    """A DuckDB value as case JSON: dates as ISO text, structs as objects; a flat list's text items
    become objects of their first field. Anything else passes as is, for case validation to judge."""
    if isinstance(value, datetime.datetime):
        return value.isoformat()  # a timestamp is not a date: validation says so at this column
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [({flat_field: v} if flat_field and isinstance(v, str) else _value(v)) for v in value]
    if isinstance(value, dict):
        return {k: _value(v) for k, v in value.items() if v is not None}
    if hasattr(value, "as_integer_ratio") and not isinstance(value, (int, float)):
        return float(value)  # DECIMAL: validation rejects a non-integer where a count belongs
    return value


# --- writing -------------------------------------------------------------------------------------

# The Parquet output: one row per service line (one per record that could not be decided).
OUTPUT_COLUMNS = (
    ("record", "BIGINT"), ("case_id", "VARCHAR"), ("payer", "VARCHAR"), ("policy_version", "VARCHAR"),
    ("line", "VARCHAR"), ("source_row", "VARCHAR"), ("code", "VARCHAR"), ("units", "BIGINT"),
    ("modality", "VARCHAR"), ("determination", "VARCHAR"), ("deciding_rules", "VARCHAR[]"),
    ("finding_rules", "VARCHAR[]"), ("missing_documentation", "VARCHAR"), ("missing_fields", "VARCHAR[]"),
    ("overall", "VARCHAR"), ("kb_sha256", "VARCHAR"), ("error_pointer", "VARCHAR"), ("error", "VARCHAR"),
    ("error_reason", "VARCHAR"),
)


def line_rows(record, result: dict) -> list:
    """The output rows of a decided record: its lines with their headline, the rules that decided
    it, and the missing documentation as text."""
    where = record.cells
    rows = []
    for line in result["lines"]:
        head = line["determination"]
        fields = []
        for gap in line["missing_documentation"]:
            for f in gap["fields"]:
                name = where.column(f["pointer"]) if where else f["pointer"]
                if name not in fields:
                    fields.append(name)
        rows.append({
            "record": record.number, "case_id": result["case_id"], "payer": result["payer"],
            "policy_version": result["policy"]["version"], "line": line["pointer"],
            "source_row": where(line["pointer"]) if where else None, "code": line["code"], "units": line["units"],
            "modality": line["modality"], "determination": head,
            "deciding_rules": [f["rule"] for f in line["findings"] if f["determination"] == head],
            "finding_rules": [f["rule"] for f in line["findings"]],
            "missing_documentation": " ".join(g["text"] for g in line["missing_documentation"]) or None,
            "missing_fields": sorted(fields), "overall": result["overall"]["determination"],
            "kb_sha256": result["knowledge_base"]["sha256"], "error_pointer": None, "error": None,
            "error_reason": None})
    return rows


def error_row(record, case_id, pointer: str, message: str, reason: str) -> dict:
    row = {name: None for name, _t in OUTPUT_COLUMNS}
    row.update(record=record.number, case_id=case_id, determination="error", deciding_rules=[],
               finding_rules=[], missing_fields=[], error_pointer=pointer, error=message, error_reason=reason)
    return row


_HEAD = re.compile(r"[\"'(;:]|\d")


def reason(record, pointer: str, message: str) -> str:
    """An error's kind for counting: the field (a column for tables) and the message's first words."""
    where = record.cells
    field = where.column(pointer) if where else (re.sub(r"/\d+", "/*", pointer) or "(document)")
    head = _HEAD.split(message, 1)[0].strip() or message
    return f"{field}: {head[:1].lower() + head[1:]}"


class ParquetSink:
    """Collects output rows as JSON lines in a scratch file beside the target, then has DuckDB turn
    them into the Parquet file and moves it into place: memory stays flat, and a crash never
    leaves half a Parquet file under the target name."""

    def __init__(self, target: str, identities=frozenset()):
        target_path = Path(target)
        try:
            st = os.stat(target_path)
            if (st.st_dev, st.st_ino) in identities:
                raise InputError([("", "the output is an input file; it is never overwritten")], target)
        except FileNotFoundError:
            pass
        _duckdb()  # a missing extra stops the batch before any work
        self.target = target_path
        self.scratch = target_path.with_name(f".{target_path.name}.{os.getpid()}.jsonl")
        self.partial = target_path.with_name(f".{target_path.name}.{os.getpid()}.partial")
        self.rows = open(self.scratch, "w", encoding="utf-8")

    def add(self, outcome) -> None:
        for row in outcome.rows:
            self.rows.write(json.dumps(row, ensure_ascii=False) + "\n")

    def close(self, complete: bool = True) -> None:
        try:
            self.rows.close()
            if complete:
                _json_lines_to_parquet(self.scratch, OUTPUT_COLUMNS, self.partial)
                os.replace(self.partial, self.target)
        finally:
            for leftover in (self.scratch, self.partial):
                leftover.unlink(missing_ok=True)


def _json_lines_to_parquet(source: Path, columns, target: Path) -> None:
    """DuckDB reads JSON lines with the given (name, type) columns and writes them, in file
    order, as Parquet (DuckDB's own writer: no pyarrow)."""
    duckdb = _duckdb()
    spec = "{" + ", ".join(f"'{_lit(n)}': '{_lit(t)}'" for n, t in columns) + "}"
    con = duckdb.connect()
    try:
        con.execute(f"COPY (SELECT {', '.join(_q(n) for n, _t in columns)} FROM read_json('{_lit(source)}', "
                    f"format = 'newline_delimited', columns = {spec})) TO '{_lit(target)}' (FORMAT parquet)")
    finally:
        con.close()


def _lit(path: Path) -> str:
    return str(path).replace("'", "''")


class NullSink:
    """The record sink of a batch whose outcomes go to a table output only."""

    label = "the Parquet output"

    def write(self, _piece: bytes) -> None:
        pass


class TableSource:
    """A table source as batch input (see batch.open_source): its records, their count, and the
    files an output must not be."""

    def __init__(self, source: Source):
        self.source = source
        self.name = source.lines.name
        self.skipped = []
        self.identities = set()
        for given in source.inputs():
            st = os.stat(given)
            self.identities.add((st.st_dev, st.st_ino))

    def records(self):
        return read_records(self.source)

    def count(self) -> int:
        return count_cases(self.source)


# --- case files as table rows (the shipped example, tests, benchmarks) ------------------------------

def _sql_type(annotation) -> str:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Union and len(args) == 1:
        return _sql_type(args[0])
    if typing.get_origin(annotation) in (list, typing.List):
        item = typing.get_args(annotation)[0]
        if isinstance(item, type) and issubclass(item, BaseModel):
            fields = ", ".join(f"{_q(n)} {_sql_type(f.annotation)}" for n, f in item.model_fields.items())
            return f"STRUCT({fields})[]"
        return f"{_sql_type(item)}[]"
    if typing.get_origin(annotation) is typing.Literal:
        return "VARCHAR"
    return {str: "VARCHAR", int: "BIGINT", bool: "BOOLEAN", datetime.date: "DATE"}.get(annotation, "VARCHAR")


def column_types() -> dict:
    """Every line-table column with its DuckDB type (diagnoses as a list of ICD-10-CM codes)."""
    types = {}
    for name, path in CASE_COLUMNS.items():
        model = Case
        for part in path[:-1]:
            info = next(i for n, i in model.model_fields.items() if (i.alias or n) == part)
            model = info.annotation if isinstance(info.annotation, type) else \
                [a for a in typing.get_args(info.annotation) if a is not type(None)][0]
        info = next(i for n, i in model.model_fields.items() if (i.alias or n) == path[-1])
        types[name] = "VARCHAR[]" if name in FLAT_LISTS else _sql_type(info.annotation)
    for name, info in Service.model_fields.items():
        types[name] = _sql_type(info.annotation)
    return types


def rows_of_case(doc: dict) -> list:
    """A case/v1 document as line-table rows: one per service line, the case columns repeated."""
    case = {}
    for name, path in CASE_COLUMNS.items():
        value = doc
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        if name in FLAT_LISTS and value is not None:
            value = [item[FLAT_LISTS[name]] for item in value]
        case[name] = value
    return [{**case, **{k: s.get(k) for k in LINE_COLUMNS}} for s in doc["services"]]


def write_rows(rows: list, target: str, columns: Optional[list] = None) -> None:
    """Write line-table rows (dicts) to a Parquet file through DuckDB, with the layout's types."""
    types = column_types()
    columns = columns or list(types)
    scratch = Path(target).with_name(f".{Path(target).name}.{os.getpid()}.jsonl")
    try:
        with open(scratch, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps({c: row.get(c) for c in columns}, ensure_ascii=False, default=str) + "\n")
        _json_lines_to_parquet(scratch, [(c, types.get(c, "VARCHAR")) for c in columns], Path(target))
    finally:
        scratch.unlink(missing_ok=True)
