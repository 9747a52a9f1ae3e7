"""FHIR R4 in and Da Vinci CRD / DTR out: Bundles read as case files, coverage information, questionnaires.

Public surface: `read.read_bundle(doc, kb) -> FhirCase` (the case, the case/v1 document, the
map from case pointers to Bundle pointers, the IONM lines' order resources, the Coverage);
`crd.cds_response(kb, inp, document)` (a CDS Hooks response with CRD coverage information),
`crd.questionnaire(inp, document)` (a DTR Questionnaire). Top-level modules (inputs, api,
serve) use it; it imports fhir.resources only when a Bundle is read, so `explain case.json`
never loads it.
"""
