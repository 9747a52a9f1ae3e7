"""The ionm-logic command line: parses arguments, calls the library, prints. Nothing else."""
from __future__ import annotations

import json
import os
import sys

import click
from tabulate import tabulate

from . import api
from .case import json_schema
from .engine import RulesError
from .errors import InputError, shorten

# `test`'s status when golden cases did not all pass: 1 is kept for internal errors, 2 for bad input.
TESTS_FAILED = 3

RULES_OPTION = click.option("--rules", "rule_dirs", multiple=True, type=click.Path(),
                            help="A folder of your own rule files, loaded after the shipped ones (repeatable).")


class Group(click.Group):
    """Maps errors to exit statuses: 2 for bad input or rules, 1 for internal errors; no tracebacks."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except InputError as exc:
            click.echo(f"error: {exc.render()}", err=True)
            sys.exit(2)
        except RulesError as exc:
            click.echo("error: the rule files have problems:", err=True)
            for p in exc.problems:
                click.echo(f"  {p}", err=True)
            sys.exit(2)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            click.echo("\ninterrupted", err=True)
            sys.exit(130)
        except BrokenPipeError:
            # The reader of the output went away (`... | head`): not an internal error.
            _silence_stdout()
            sys.exit(141)
        except Exception as exc:  # noqa: BLE001 - the last line of defence
            if os.environ.get("IONM_LOGIC_DEBUG"):
                raise
            click.echo(f"internal error: {type(exc).__name__}: {exc} (set IONM_LOGIC_DEBUG=1 for a traceback)", err=True)
            sys.exit(1)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ionm-logic")
def main():
    """Decide whether IONM service lines are medically necessary, and show why."""


@main.command()
@click.argument("case_file", metavar="CASE.json")
@click.option("--payer", help="Policy pack to decide under (overrides the case's payer).")
@click.option("--as-of", help="Decide under the policy version in force on this date (YYYY-MM-DD).")
@click.option("--format", "fmt", type=click.Choice(api.FORMATS), default="text", show_default=True,
              help="Report format.")
@click.option("--detail", type=click.Choice(["short", "full"]), default="short", show_default=True,
              help="full prints every finding's proof tree in the report.")
@click.option("--line", "line_code", metavar="CODE", help="With --format dot: only this line's proofs (a code or /services/N).")
@click.option("--why-not", "why_not_target", metavar="CODE=DETERMINATION",
              help="Explain why a line did not get a determination: each rule's nearest miss.")
@click.option("--answers", "answers_file", metavar="QR.json",
              help="Apply a FHIR QuestionnaireResponse (from --format questionnaire) to the case, then decide.")
@RULES_OPTION
def explain(case_file, payer, as_of, fmt, detail, line_code, why_not_target, answers_file, rule_dirs):
    """Decide every IONM line of CASE.json (a case file v1 or a FHIR R4 Bundle) and explain each decision.

    --format crd prints a CDS Hooks response with Da Vinci CRD coverage information for each IONM
    order; --format questionnaire a DTR Questionnaire for the missing documentation."""
    day = api.parse_date(as_of)
    kb = api.knowledge_base(rule_dirs)
    inp = api.read_input(case_file, kb, answers_file, payer)
    if why_not_target:
        from .render.text import render_why_not

        report = api.why_not(kb, inp.case, why_not_target, payer=payer, as_of=day, source=case_file)
        click.echo(api.to_json(report) if fmt == "json" else render_why_not(report), nl=False)
        return
    from .engine.limits import within_time_limit  # a decision that never finishes ends, exit 2

    decision = within_time_limit(api.explain_input, kb, inp, payer=payer, as_of=day)
    click.echo(api.render_input(kb, inp, decision, fmt, detail, line_code), nl=False)


@main.command()
@click.argument("case_file", metavar="CASE.json")
@click.option("--payer", "payers", multiple=True, help="Give twice: the two policy packs to compare.")
@click.option("--as-of", "dates", multiple=True, help="Give twice: the two dates to compare.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@RULES_OPTION
def diff(case_file, payers, dates, fmt, rule_dirs):
    """Compare one case's decisions under two payers (--payer A --payer B) or two dates."""
    from .explain import diff as diffing
    from .render.text import render_diff

    if not ((len(payers) == 2 and len(dates) <= 1) or (len(dates) == 2 and len(payers) <= 1)):
        raise InputError([("", "give --payer twice or --as-of twice (the other at most once)")])
    kb = api.knowledge_base(rule_dirs)
    case = api.read_case(case_file)
    if len(payers) == 2:
        day = api.parse_date(dates[0]) if dates else None
        sides = [(p, dict(payer=p, as_of=day)) for p in payers]
    else:
        sides = [(d, dict(payer=payers[0] if payers else None, as_of=api.parse_date(d))) for d in dates]
    results = [api.explain_case(kb, case, source=case_file, **kwargs).document for _label, kwargs in sides]
    report = diffing(results[0], results[1], (sides[0][0], sides[1][0]))
    click.echo(api.to_json(report) if fmt == "json" else render_diff(report), nl=False)


@main.command()
@click.argument("source", metavar="CASES.jsonl|DIR|-|CLAIMS.parquet", required=False,
                type=click.Path(exists=True, allow_dash=True))
@click.option("-o", "--output", metavar="OUT",
              help="Write records here instead of standard output (never the input); a .parquet name writes "
                   "one row per service line.")
@click.option("--jobs", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes (output is the same for any number).")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.option("--detail", type=click.Choice(["full", "short"]), default="full", show_default=True,
              help="short leaves every proof out of JSON-lines records (a finding keeps its rule, text and "
                   "citations); CSV never holds proofs.")
@click.option("--payer", help="Policy pack for every case (overrides each case's payer).")
@click.option("--as-of", help="Decide every case under the version in force on this date.")
@click.option("--lines", "lines_table", type=click.Path(exists=True), metavar="LINES.parquet",
              help="The line table, when CLAIMS.parquet is a case table (one row per case).")
@click.option("--db", type=click.Path(exists=True), metavar="FILE.duckdb",
              help="Read a DuckDB database: --sql's result as a line table, or else its tables cases and lines.")
@click.option("--sql", metavar="QUERY", help="With --db: a SELECT giving one row per service line.")
@click.option("--dask", "scheduler", metavar="ADDRESS",
              help="Decide on the Dask cluster at this scheduler address (tcp://host:8786) instead of --jobs.")
@click.option("--memo-mb", type=click.IntRange(0, 4096), default=32, show_default=True,
              help="Per worker, remember this many MB of decided records and answer a case with the same facts, "
                   "pointers, policy version and options from them (exact: the same bytes; 0: off).")
@click.option("--summary", "summary_page", type=click.Path(), metavar="SUMMARY.html",
              help="Also write a self-contained page of charts: headlines, errors, missing documentation.")
@RULES_OPTION
def batch(source, output, jobs, fmt, detail, payer, as_of, lines_table, db, sql, scheduler, memo_mb, summary_page,
          rule_dirs):
    """Decide every case of a JSON-lines file (- for standard input) or a folder of case files
    (*.json, any case), in order.

    One output record per input record: a determination, or an ionm-logic/error/v1 record for
    a case that cannot be decided (the others still run), each with a "source" naming its record
    number and file. A summary goes to standard error; a progress bar too, on a terminal, unless
    the records go to that terminal.

    Each decision has a time limit ($IONM_LOGIC_TIME_LIMIT seconds, default 60, "off": none):
    a case past it is an error record saying so (its worker process is replaced), even with
    --jobs 1, which then decides in one worker process.

    Exit status: 0 every record written (bad cases and decisions past the time limit as error
    records); 1 internal error (an error record says which case) or a worker process that died
    (killed by someone else); 2 bad options, an unreadable
    input or an output that cannot be written (a missing folder, a directory, a full disk);
    128+N stopped by signal N (130 Ctrl-C, 143 SIGTERM, 141 the reader of the output went away).
    A run that stops early leaves only complete records and says which were not decided.

    Claims tables (Parquet, or DuckDB with --db) are read in the layouts of docs/tables.md."""
    from . import batch as batching
    from .engine.limits import configured_seconds
    from .pipeline import Pipeline

    api.parse_date(as_of)
    configured_seconds()  # a bad $IONM_LOGIC_TIME_LIMIT stops here, before any output
    kb = api.knowledge_base(rule_dirs)  # bad --rules stop here, before any output
    api.check_payer(kb, payer)
    options = batching.Options(payer=payer, as_of=as_of, rule_dirs=tuple(rule_dirs), fmt=fmt, detail=detail,
                               memo_bytes=memo_mb * 1024 * 1024)
    ends = Pipeline(source, output, options, db=db, sql=sql, lines=lines_table, summary_page=summary_page,
                    scheduler=scheduler)
    inputs = ends.inputs
    try:
        sink = ends.open_output()
    except ValueError as exc:
        ends.close(False)
        if output is None:
            raise InputError([("", str(exc))]) from None
        raise click.BadParameter(str(exc), param_hint="'-o' / '--output'") from None
    bar = None
    done = False
    # The bar shares a terminal with the records only if they go to standard output there.
    if sys.stderr.isatty() and (output is not None or not sys.stdout.isatty()):
        total = inputs.count()
        if total is not None:
            bar = click.progressbar(length=total, label="deciding", file=sys.stderr)
            bar.__enter__()
    try:
        summary = batching.run(inputs.records(), sink, ends.options, jobs=jobs, progress=bar.update if bar else None,
                               **ends.run_options())
        done = True
    except batching.Aborted as exc:
        done = True  # a Parquet output keeps the records decided so far, as a JSON-lines one does
        if bar is not None:
            click.echo("", err=True)
        click.echo(f"error: {exc}", err=True)
        if exc.status == batching.STATUS_BROKEN_PIPE:
            _silence_stdout()
        sys.exit(exc.status)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
        ends.close(done)
    ends.finish()
    headers, rows = batching.summary_rows(summary)
    if rows:
        click.echo(tabulate(rows, headers=headers), err=True)
    if inputs.skipped:
        click.echo(f"skipped {len(inputs.skipped)} file(s) that are not *.json: "
                   f"{', '.join(shorten(n, 40) for n in inputs.skipped[:5])}{' ...' if len(inputs.skipped) > 5 else ''}",
                   err=True)
    timeouts = f" ({summary.timeouts} past the time limit)" if summary.timeouts else ""
    click.echo(f"{summary.records} record(s), {summary.records - summary.errors} decided, "
               f"{summary.errors} error(s){timeouts}", err=True)
    if summary.internal:
        sys.exit(1)


def _silence_stdout() -> None:
    # Standard output is a closed pipe: point it at /dev/null so the interpreter's exit flush
    # has nowhere to fail.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


@main.command()
@RULES_OPTION
def schema(rule_dirs):
    """Print the JSON Schema of case files (ionm-logic/case/v1), with the rules' vocabularies."""
    click.echo(json.dumps(json_schema(api.knowledge_base(rule_dirs)), indent=2))


@main.command()
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@RULES_OPTION
def policies(fmt, rule_dirs):
    """List the policy packs, their versions, the dates each is in force, and the scope each encodes."""
    from .policy import version_rows

    rows = version_rows(api.knowledge_base(rule_dirs))
    scopes = {r["pack"]: r["scope"] for r in rows}
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(tabulate([[r["pack"], r["version"], r["in_force"][0], r["in_force"][1] or "open", r["title"],
                          r["sources"]] for r in rows],
                        headers=["Pack", "Version", "From", "To", "Title", "Sources"]))
    for pack, scope in scopes.items():
        encoded = ", ".join(c.replace("_", " ") for c in scope["encoded_classes"]) or "none"
        modalities = ", ".join(scope["encoded_modalities"])
        click.echo(f"\n{pack} encodes in full: {encoded}" + (f"; every use of {modalities}" if modalities else ""))
        for gap in scope["not_encoded"]:
            click.echo(f"  not encoded: {gap['class'].replace('_', ' ')} — {gap['reason']}")
        if scope["elsewhere"]:
            click.echo(f"  elsewhere: {scope['elsewhere']}")


@main.command()
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@RULES_OPTION
def check(fmt, rule_dirs):
    """Check the rule files: syntax, declarations, arity, safety, stratification, citations."""
    try:
        kb = api.knowledge_base(rule_dirs)
        problems = kb.problems
    except RulesError as exc:
        problems = exc.problems
    if fmt == "json":
        click.echo(json.dumps([{"file": p.file, "line": p.line, "level": p.level, "message": p.message}
                               for p in problems], indent=2))
    else:
        for p in problems:
            click.echo(str(p))
        errors = sum(p.level == "error" for p in problems)
        click.echo(f"{errors} error(s), {len(problems) - errors} warning(s)", err=True)
    if any(p.level == "error" for p in problems):
        sys.exit(2)


@main.command()
@click.argument("files", nargs=-1, type=click.Path())
@RULES_OPTION
def test(files, rule_dirs):
    """Run golden cases: the shipped packs', each --rules folder's tests/, and FILES.

    Exit status: 0 every golden case passed; 3 a case failed, or a golden file or case could
    not be run (each is reported, the others still run); 2 bad input (rule files with errors,
    a FILE that does not exist); 1 internal error."""
    from pathlib import Path

    from .engine import shipped_rules_dir
    from .golden import golden_files, run_suite, uncovered_rules

    kb = api.knowledge_base(rule_dirs)
    folders = [shipped_rules_dir() / "tests"] + [Path(d) / "tests" for d in rule_dirs] + [Path(f) for f in files]
    missing = [str(f) for f in files if not Path(f).exists()]
    if missing:
        raise InputError([("", f"no such file or folder: {m}") for m in missing])
    result = run_suite(kb, golden_files(folders))
    for golden, failures in result.failed:
        click.echo(f"FAIL {golden.name}  ({golden.file})")
        for message in failures:
            click.echo(f"  - {message}")
        if golden.why:
            click.echo(f"  why: {' '.join(golden.why.split())}")
    for file, message in result.errors:
        click.echo(f"ERROR {file}: {message}")
    uncovered = uncovered_rules(kb, result.exercised)
    click.echo(f"\nrule coverage: {len(kb.rules) - len(uncovered)} of {len(kb.rules)} rules exercised")
    for rule in uncovered:
        click.echo(f"  not exercised: {rule.id} ({rule.file}:{rule.line})")
    failed = len(result.failed) + len(result.errors)
    click.echo(f"{result.passed} passed, {failed} failed")
    sys.exit(TESTS_FAILED if failed or not result.passed else 0)


@main.command()
@click.argument("query_text", metavar="QUERY")
@click.option("--case", "case_file", help="Assert this case's facts before asking.")
@click.option("--why", is_flag=True, help="Print the proof of every answer.")
@RULES_OPTION
def query(query_text, case_file, why, rule_dirs):
    """Ask the knowledge base an ad hoc question, e.g. 'level_rank(Level, 24)'."""
    from .render.nodes import proof_lines

    kb = api.knowledge_base(rule_dirs)
    case = api.read_case(case_file) if case_file else None
    headers, rows, proofs = api.run_query(kb, query_text, case, why=why, source=case_file or "")
    if not rows:
        click.echo("no answers")
        return
    from .explain.text import plain

    click.echo(tabulate([[plain(v) for v in row] for row in rows], headers=headers) if headers else "yes")
    for label, proof in proofs:
        click.echo(f"\n{plain(label)}")
        click.echo("\n".join(proof_lines(proof)))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes, each with its own engine process and loaded rules.")
@click.option("--jwks", metavar="URL-or-FILE",
              help="Check CDS Hooks bearer tokens (RS384/ES384, aud = the service URL) against this JWKS. "
                   "Off by default: without it the server trusts every caller, for local use only.")
@RULES_OPTION
def serve(host, port, workers, jwks, rule_dirs):
    """Serve CDS Hooks (Da Vinci CRD coverage information for IONM orders) and /explain over HTTP.

    GET /cds-services, POST /cds-services/ionm-coverage, POST /explain?format=..., GET /healthz,
    GET /version, GET /openapi.json. Needs the [serve] extra (FastAPI, uvicorn). A decision past
    $IONM_LOGIC_TIME_LIMIT seconds (default 60) is answered 503 and its engine process replaced."""
    try:
        from . import serve as serving
        import uvicorn  # noqa: F401 - fail here, with a clear message, if the extra is missing
    except ImportError as exc:
        raise click.ClickException(f"serve needs the [serve] extra (pip install 'ionm-logic[serve]'): {exc}")
    api.rule_set(rule_dirs)  # bad --rules stop here, before the server starts
    from .engine.limits import configured_seconds

    configured_seconds()  # and so does a bad $IONM_LOGIC_TIME_LIMIT
    serving.run(host, port, workers, rule_dirs, jwks)
