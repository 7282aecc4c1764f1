"""The CRD models and the generated YAML: drift, structure, defaults and CEL rules."""

from __future__ import annotations

from typing import Any, get_args

import pytest
import yaml
from pydantic import ValidationError

from infinitecontext.crds import generate
from infinitecontext.crds.models import (
    KINDS,
    TRAINING_RUN,
    AlignmentSpec,
    EvaluationSpec,
    Hyperparameters,
    InferenceServiceSpec,
    PresetName,
    TrainingRunSpec,
)
from infinitecontext.model.config import PRESETS


def test_committed_crds_match_the_models() -> None:
    stale = generate.stale()
    assert not stale, f"run `icx crds generate`: {[p.name for p in stale]}"


def _walk(node: Any, path: str = "") -> Any:
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_schema_is_structural(kind: Any) -> None:
    schema = generate.crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        assert "$ref" not in node and "anyOf" not in node and "allOf" not in node, path
        assert "title" not in node, path
        if path.endswith(".properties") or path.endswith("x-kubernetes-validations"):
            continue
        if "properties" in node or "items" in node or "enum" in node or "default" in node:
            assert "type" in node, f"{path} has no type"


def _undocumented(node: dict[str, Any], path: str) -> Any:
    """Paths of the properties under `node` without a description (what `kubectl
    explain` would show blank)."""
    for name, sub in node.get("properties", {}).items():
        here = f"{path}.{name}"
        if not sub.get("description", "").strip():
            yield here
        yield from _undocumented(sub, here)
    if isinstance(node.get("items"), dict):
        yield from _undocumented(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _undocumented(node["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_every_field_has_a_description(kind: Any) -> None:
    schema = generate.crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    # metadata is ObjectMeta, described by the API server (a CRD may not describe it).
    missing = [p for p in _undocumented(schema, kind.singular) if p != f"{kind.singular}.metadata"]
    assert not missing, "fields without a docstring in crds/models.py:\n" + "\n".join(missing)


def test_descriptions_carry_the_models_defaults() -> None:
    properties = generate.crd(TRAINING_RUN)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    hyper = properties["properties"]["spec"]["properties"]["hyperparameters"]["properties"]
    assert hyper["learningRate"]["description"].endswith(
        f"Default `{Hyperparameters().learning_rate}`."
    )
    tolerations = properties["properties"]["spec"]["properties"]["kubernetes"]["properties"][
        "tolerations"
    ]
    assert "Default" not in tolerations["description"]  # empty list: nothing to show
    assert "matches every taint" in tolerations["items"]["properties"]["key"]["description"]


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_crd_names_status_and_columns(kind: Any) -> None:
    crd = generate.crd(kind)
    names = crd["spec"]["names"]
    assert names["categories"] == ["infinitecontext"]
    assert "isvc" not in names["shortNames"]
    version = crd["spec"]["versions"][0]
    assert version["name"] == "v1alpha1" and "status" in version["subresources"]
    columns = {c["name"] for c in version["additionalPrinterColumns"]}
    assert {"Phase", "Ready", "Model", "Age", "Reason", "Message"} <= columns
    assert ("scale" in version["subresources"]) == (kind.kind == "InferenceService")


def test_yaml_files_parse_and_carry_cel_rules() -> None:
    text = generate.crd_path(KINDS[0]).read_text()
    crd = yaml.safe_load(text)
    rules = [
        rule["rule"] for _, node in _walk(crd) for rule in node.get("x-kubernetes-validations", [])
    ]
    assert any("has(self.preset)" in r for r in rules)
    assert any("self.backend == 'slurm'" in r for r in rules)


def test_preset_enum_matches_the_model_presets() -> None:
    assert set(get_args(PresetName)) == set(PRESETS)


def test_defaults_fill_a_minimal_training_run() -> None:
    spec = TrainingRunSpec.model_validate({"model": {"preset": "tiny"}})
    assert spec.backend == "kubernetes" and spec.resources.nodes == 1
    assert spec.data.synthetic is not None and spec.data.synthetic.tasks == ["passkey"]
    assert spec.mlflow.experiment == "infinitecontext"


def test_full_mla_config_is_validated_by_the_model_code() -> None:
    spec = TrainingRunSpec.model_validate({"model": {"config": {"vocabSize": 512}}})
    assert spec.model.config is not None and spec.model.config.vocab_size == 512
    with pytest.raises(ValidationError, match="qk_rope_head_dim must be even"):
        TrainingRunSpec.model_validate({"model": {"config": {"qkRopeHeadDim": 3}}})


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError, match="extra"):
        TrainingRunSpec.model_validate({"model": {"preset": "tiny"}, "modle": {}})


def test_other_kinds_parse_their_examples() -> None:
    AlignmentSpec.model_validate({"baseModel": {"trainingRun": "tiny"}})
    EvaluationSpec.model_validate({"model": {"mlflow": {"name": "m", "alias": "champion"}}})
    isvc = InferenceServiceSpec.model_validate({"model": {"alignment": "a"}})
    assert isvc.autoscaling.metric == "vllm:num_requests_waiting"
    assert isvc.rollout.strategy == "RollingUpdate"


def test_there_is_an_example_of_every_kind() -> None:
    """(tests/test_examples.py validates every example against the CRDs.)"""
    examples = sorted((generate.CRD_DIR.parent / "examples").glob("*.yaml"))
    assert {yaml.safe_load(p.read_text())["kind"] for p in examples} == {k.kind for k in KINDS}
