"""proto-schemas checked by their official tools (issue 24, item 2).

- asyncapi.yaml parses with the official AsyncAPI parser (npm @asyncapi/parser, installed
  into tests/contracts/node_modules by run.sh) with no error;
- every JSON Schema (v1/*.schema.json and every schema inside asyncapi.yaml) passes
  ``check_schema`` of python-jsonschema for its dialect;
- every example (v1/examples/*.json, and every message example in asyncapi.yaml) validates
  against its schema, with formats asserted and cross-file ``$ref`` resolved by ``$id``.
"""

import json
import pathlib
import subprocess

import jsonschema
import pytest
import referencing
import yaml
from jsonschema import Draft202012Validator
from referencing.jsonschema import DRAFT202012

HERE = pathlib.Path(__file__).resolve().parent
PROTO = HERE.parent.parent / "proto-schemas"
V1 = PROTO / "v1"
BASE = "https://schemas.accesshub.dev/v1/"
ASYNCAPI = PROTO / "asyncapi.yaml"
FORMATS = Draft202012Validator.FORMAT_CHECKER


def schema_files():
    return sorted(V1.glob("*.schema.json"))


def example_files():
    return sorted((V1 / "examples").glob("*.json"))


def registry():
    resources = []
    for f in schema_files():
        doc = json.loads(f.read_text())
        resources.append((doc["$id"], DRAFT202012.create_resource(doc)))
    return referencing.Registry().with_resources(resources)


def validator(schema):
    return Draft202012Validator(schema, registry=registry(), format_checker=FORMATS)


def asyncapi():
    return yaml.safe_load(ASYNCAPI.read_text())


def test_asyncapi_official_parser():
    node_modules = HERE / "node_modules" / "@asyncapi" / "parser"
    assert node_modules.is_dir(), "run tests/contracts/run.sh (it installs @asyncapi/parser)"
    out = subprocess.run(
        ["node", str(HERE / "validate-asyncapi.mjs"), str(ASYNCAPI)],
        cwd=HERE, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "valid AsyncAPI" in out.stdout


@pytest.mark.parametrize("path", schema_files(), ids=lambda p: p.name)
def test_json_schema_is_valid_for_its_dialect(path):
    doc = json.loads(path.read_text())
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert doc["$id"] == BASE + path.name
    jsonschema.validators.validator_for(doc).check_schema(doc)


@pytest.mark.parametrize("path", example_files(), ids=lambda p: p.name)
def test_example_validates_against_its_schema(path):
    schema_name = path.name.split("--", 1)[0] + ".schema.json"
    assert (V1 / schema_name).is_file(), f"{path.name}: no schema {schema_name}"
    errors = list(validator({"$ref": BASE + schema_name}).iter_errors(json.loads(path.read_text())))
    assert not errors, [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]


def inline_schemas(doc):
    """(where, schema) for every schema written inside asyncapi.yaml."""
    out = [(f"components.schemas.{k}", v) for k, v in doc["components"]["schemas"].items()]
    for name, msg in doc["components"]["messages"].items():
        payload = msg.get("payload")
        if payload is None:
            continue
        out.append((f"components.messages.{name}.payload", payload.get("schema", payload)))
    return out


def rebase(schema, doc=None):
    """asyncapi.yaml refers to './v1/x.schema.json' (the registry knows them by $id) and to its
    own '#/components/schemas/x' (inlined here)."""
    doc = doc if doc is not None else asyncapi()
    if isinstance(schema, dict):
        ref = schema.get("$ref", "")
        if set(schema) == {"$ref"} and ref.startswith("#/components/schemas/"):
            return rebase(doc["components"]["schemas"][ref.rsplit("/", 1)[1]], doc)
        return {
            k: (BASE + v.removeprefix("./v1/") if k == "$ref" and v.startswith("./v1/") else rebase(v, doc))
            for k, v in schema.items()
        }
    if isinstance(schema, list):
        return [rebase(v, doc) for v in schema]
    return schema


def test_asyncapi_inline_schemas_are_valid():
    for where, schema in inline_schemas(asyncapi()):
        if isinstance(schema, dict) and set(schema) == {"$ref"} and schema["$ref"].startswith("#"):
            continue
        try:
            Draft202012Validator.check_schema(rebase(schema))
        except jsonschema.SchemaError as e:
            pytest.fail(f"{where}: {e.message}")


def test_asyncapi_message_examples_validate():
    doc = asyncapi()
    seen = 0
    for name, msg in doc["components"]["messages"].items():
        schema = rebase(msg["payload"].get("schema", msg["payload"]))
        for ex in msg.get("examples", []):
            assert "payload" in ex or "headers" in ex, f"{name}: example {ex.get('name')} is empty"
            payload = ex.get("payload")
            if isinstance(payload, dict) and set(payload) == {"$ref"}:
                payload = json.loads((PROTO / payload["$ref"]).read_text())
            errors = list(validator(schema).iter_errors(payload))
            assert not errors, (name, ex.get("name"), [e.message for e in errors])
            seen += 1
    # Every example file is shown in the AsyncAPI document too (plus the inline repairRemove).
    assert seen == len(example_files()) + 1
