"""Every manifest under examples/ (lifecycle/ and gpu/ included) is a valid object of our
CRDs: by the pydantic models the operator parses with, by the OpenAPI schema of the
committed crds/*.yaml (unknown fields refused, as `kubectl apply --validate=strict` does),
and, when a cluster is up, by the API server itself (a server-side dry run, CEL rules
included)."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from plugins.kube import KubeCluster
from pydantic import ValidationError

from infinitecontext.crds.models import KINDS

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_FILES = sorted((REPO / "examples").rglob("*.yaml"))


def example_documents() -> list[tuple[str, dict[str, Any]]]:
    """(file#index, object) for every YAML document under examples/."""
    found = []
    for path in EXAMPLE_FILES:
        for index, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if doc is not None:
                found.append((f"{path.relative_to(REPO)}#{index}", doc))
    return found


DOCUMENTS = example_documents()


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI v3 structural schema as JSON Schema that refuses unknown fields (the API
    server prunes them silently; kubectl's strict validation refuses them)."""
    out = {key: value for key, value in schema.items() if not key.startswith("x-kubernetes-")}
    if "properties" in schema:
        out["properties"] = {name: strict(sub) for name, sub in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get(
            "x-kubernetes-preserve-unknown-fields"
        ):
            out["additionalProperties"] = False
    if isinstance(schema.get("additionalProperties"), dict):
        out["additionalProperties"] = strict(schema["additionalProperties"])
    if "items" in schema:
        out["items"] = strict(schema["items"])
    if schema.get("nullable") and "type" in schema:
        out["type"] = [schema["type"], "null"]
    return out


@functools.cache
def crd_validators() -> dict[tuple[str, str], jsonschema.protocols.Validator]:
    """(apiVersion, kind) → a validator, for each served version of crds/*.yaml."""
    validators = {}
    for path in sorted((REPO / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version.get("served"):
                schema = strict(version["schema"]["openAPIV3Schema"])
                key = (f"{group}/{version['name']}", kind)
                validators[key] = jsonschema.Draft4Validator(schema)  # OpenAPI 3.0 is draft 4 based
    return validators


def schema_errors(obj: dict[str, Any]) -> list[str]:
    validator = crd_validators().get((obj.get("apiVersion", ""), obj.get("kind", "")))
    if validator is None:
        return [f"no CRD serves {obj.get('apiVersion')} {obj.get('kind')}"]
    return [
        f"{'.'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
        for error in validator.iter_errors(obj)
    ]


def parse_spec(obj: dict[str, Any]) -> Any:
    by_kind = {kind.kind: kind for kind in KINDS}
    return by_kind[obj["kind"]].spec.model_validate(obj["spec"])


def test_every_kind_has_an_example() -> None:
    assert {doc["kind"] for _, doc in DOCUMENTS} == {kind.kind for kind in KINDS}
    assert any("gpu" in name for name, _ in DOCUMENTS)  # rglob reaches the subfolders


@pytest.mark.parametrize(("name", "obj"), DOCUMENTS, ids=[name for name, _ in DOCUMENTS])
def test_example_is_valid_by_the_models_and_the_crd_schema(name: str, obj: dict[str, Any]) -> None:
    assert not schema_errors(obj), f"{name}: " + "; ".join(schema_errors(obj))
    parse_spec(obj)


def test_the_schema_check_refuses_unknown_fields_and_wrong_types() -> None:
    """The offline validation is not vacuous: what the API server would refuse, it refuses."""
    _, training = next((n, d) for n, d in DOCUMENTS if d["kind"] == "TrainingRun")
    typo = copy.deepcopy(training)
    typo["spec"]["modle"] = typo["spec"].pop("model")
    assert any("modle" in error for error in schema_errors(typo))
    with pytest.raises(ValidationError):
        parse_spec(typo)
    wrong_type = copy.deepcopy(training)
    wrong_type["spec"].setdefault("hyperparameters", {})["steps"] = "many"
    assert any("hyperparameters.steps" in error for error in schema_errors(wrong_type))
    with pytest.raises(ValidationError):
        parse_spec(wrong_type)


def test_the_api_server_accepts_every_example(icx_crds: KubeCluster, kube_namespace: str) -> None:
    """A server-side dry run: the CRDs' CEL rules and defaults run too; nothing is created."""
    for path in EXAMPLE_FILES:
        icx_crds.kubectl(
            "apply", "--dry-run=server", "--validate=strict", "-n", kube_namespace, "-f", str(path)
        )
