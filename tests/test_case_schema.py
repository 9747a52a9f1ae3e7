"""The published case schema (`ionm-logic schema`) documents every field, and a field whose
values rules match is an enum of the rules' vocabulary (issue 12)."""
import json

from click.testing import CliRunner

from conftest import case_with
from ionm_logic.cli import main
from ionm_logic.lang.objects import Atom, Const


def schema() -> dict:
    out = CliRunner().invoke(main, ["schema"])
    assert out.exit_code == 0
    return json.loads(out.output)


def properties(doc):
    """(dotted path, property) of every field, following $refs into the definitions."""
    defs = doc["$defs"]

    def walk(obj, prefix):
        for name, prop in obj.get("properties", {}).items():
            yield prefix + name, prop
            refs = [prop.get("$ref"), prop.get("items", {}).get("$ref")] + [a.get("$ref") for a in prop.get("anyOf", [])]
            for ref in filter(None, refs):
                yield from walk(defs[ref.rsplit("/", 1)[1]], prefix + name + ".")

    yield from walk(doc, "")


def test_every_field_of_the_schema_has_a_description():
    found = dict(properties(schema()))
    # design.md's case-file table names these fields, among others.
    for path in ("case_id", "date_of_service", "procedure.kind", "procedure.levels", "clinical.conus_level",
                 "history.outcome", "monitoring.professional.concurrent_cases", "services.modality"):
        assert path in found
    undocumented = [path for path, prop in found.items() if not prop.get("description")]
    assert undocumented == []
    assert "not documented" in found["monitoring.professional.concurrent_cases"]["description"]


def test_history_outcome_is_an_enum_of_the_outcomes_rules_match(kb):
    enum = set(dict(properties(schema()))["history.outcome"]["anyOf"][0]["enum"])
    # Every outcome a rule body matches must be one a case may record, or that rule can never fire.
    matched = {item.atom.args[2].value for rule in kb.rules for item in rule.body
               if isinstance(getattr(item, "atom", None), Atom) and item.atom.pred == "prior_surgery_outcome"
               and isinstance(item.atom.args[2], Const)}
    assert matched and matched <= enum


def test_a_misspelt_outcome_is_an_input_error_not_a_lost_finding():
    # Spelled right, the prior microdiscectomy that resolved radicular symptoms gives the
    # OBS-PRIOR-SURGERY-RESOLVED observation (domain.md §8); misspelt, it used to vanish silently.
    doc = case_with(history=[{"procedure": "microdiscectomy", "levels": ["L5", "S1"],
                              "outcome": "radicular_symptom_resolved"}])
    out = CliRunner().invoke(main, ["explain", "-"], input=json.dumps(doc))
    assert out.exit_code == 2
    assert "/history/0/outcome" in out.output and "radicular_symptoms_resolved" in out.output
    good = case_with()
    result = json.loads(CliRunner().invoke(main, ["explain", "-", "--format", "json"], input=json.dumps(good)).output)
    assert "OBS-PRIOR-SURGERY-RESOLVED" in [o["rule"] for o in result["observations"]]
