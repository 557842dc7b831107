"""Validate a run.json against slotstorm's committed JSON Schema with the `jsonschema`
package (an implementation slotstorm did not write). Prints nothing and exits 0 when the
file is valid; otherwise prints each violation, one per line, and exits 1.

Usage: validate_run_json.py SCHEMA RUN_JSON
"""
import json
import sys

from jsonschema import Draft202012Validator

schema_path, run_path = sys.argv[1], sys.argv[2]
with open(schema_path) as f:
    schema = json.load(f)
with open(run_path) as f:
    run = json.load(f)
Draft202012Validator.check_schema(schema)
validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
errors = sorted(validator.iter_errors(run), key=lambda e: list(e.absolute_path))
for e in errors:
    where = "/".join(str(p) for p in e.absolute_path) or "(top)"
    print(f"{run_path}: {where}: {e.message}")
sys.exit(1 if errors else 0)
