"""FHIR R4 in and Da Vinci CRD / DTR out: Bundles read as case files, coverage information, questionnaires.

Everything here imports fhir.resources lazily (on the FHIR path only); `explain case.json`
never loads it.
"""
