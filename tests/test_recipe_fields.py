"""Every CRD spec field reaches the job, or is on the list of fields the operator uses.

For each leaf field of the TrainingRun, Alignment and Evaluation specs (walked from the
pydantic models, so a new field is checked without editing this test) the job is
rendered exactly as the operator renders it (`planner.reconcile` → the Kubernetes
children or the SLURM request and batch script) twice: without the field and with a
value different from its default. The two must differ, or the field must be listed
in OPERATOR_ONLY with the reason it never reaches the job.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import json
import types
import typing
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ValidationError

from infinitecontext.crds.models import (
    ALIGNMENT,
    EVALUATION,
    TRAINING_RUN,
    Kind,
    RegisteredModel,
    ResolvedJudge,
)
from infinitecontext.operator.tenancy import TenancyPolicy
from infinitecontext.operator.workloads.planner import (
    ApplyChildren,
    InputModel,
    JudgeInput,
    Observed,
    Resource,
    SubmitSlurm,
    parse,
    reconcile,
)
from infinitecontext.slurm_bridge.render import render_script

# Fields that steer the operator, not the job (python names, a prefix covers a subtree).
OPERATOR_ONLY = {
    # The operator suspends the Job or cancels the SLURM job; the recipe never changes.
    "suspend",
    # The operator registers the job's logged model under this name.
    "mlflow.registered_model_name",
    # The input model: the operator resolves the reference to a registered version and
    # the job downloads that version (ICX_INPUT_MODEL_URI), whatever named it.
    "base_model",
    "model.training_run",
    "model.alignment",
    "model.mlflow",
    # The operator grades the job's logged metrics against these.
    "thresholds",
    # The operator points this MLflow alias at the evaluated version when it passed.
    "alias_on_pass",
    # The operator resolves the InferenceService to the URL that the recipe carries.
    "judge.inference_service",
}
BASE_SPECS = {
    "TrainingRun": {"model": {"preset": "tiny"}},
    "Alignment": {"baseModel": {"trainingRun": "t"}},
    "Evaluation": {"model": {"trainingRun": "t"}},
}
NOW = datetime(2026, 1, 1, tzinfo=UTC)
INPUT = InputModel(True, RegisteredModel(name="m", version="1", uri="models:/m/1"))
JUDGE = JudgeInput(True, ResolvedJudge(url="http://judge:8000/v1", served_model="judge"))


@dataclasses.dataclass(frozen=True)
class Leaf:
    path: tuple[str, ...]
    """Python field names from the spec down."""
    aliases: tuple[str, ...]
    """The same path as the CRD spells it (camelCase)."""
    annotation: Any
    default: Any
    models: tuple[type[BaseModel], ...]
    """The model that holds each step of the path."""

    @property
    def name(self) -> str:
        return ".".join(self.path)

    @property
    def crd_name(self) -> str:
        return ".".join(self.aliases)


def leaves(model: type[BaseModel], path: tuple[str, ...] = (), aliases: tuple[str, ...] = (),
           models: tuple[type[BaseModel], ...] = ()) -> Iterator[Leaf]:  # fmt: skip
    for name, info in model.model_fields.items():
        annotation = _unwrap_optional(info.annotation)
        alias = info.alias or name
        here = (*models, model)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from leaves(annotation, (*path, name), (*aliases, alias), here)
        else:
            default = info.get_default(call_default_factory=True)
            yield Leaf((*path, name), (*aliases, alias), annotation, default, here)


def _unwrap_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(inner) == 1:
            return inner[0]
    return annotation


def candidates(annotation: Any, default: Any) -> list[Any]:
    """Values to try for a field: valid for its type, different from its default."""
    annotation = _unwrap_optional(annotation)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return candidates(args[0], default)
    if origin is Literal:
        found = list(args)
    elif isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        found = [member.value for member in annotation]
    elif annotation is bool:
        found = [not default]
    elif annotation is int:
        found = [32, 64, 2, 1] if default is None else [default + 1, 32, 2]
    elif annotation is float:
        found = [v for v in ((default or 0) * 2, (default or 0) / 2, 0.5, 2.0) if v]
    elif annotation is str:
        found = ["http://probe:1/v1", "/probe/data.jsonl", "2", "probe"]
    elif origin is list:
        found = [[item] for item in candidates(args[0], None)]
    elif origin is dict:
        found = [{"probe": "probe"}]
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        found = [sample(annotation)]
    elif dataclasses.is_dataclass(annotation):
        found = [{}]  # its defaults
    else:
        raise AssertionError(f"no probe values for {annotation!r}: extend candidates()")
    return [v for v in found if v != default and v != getattr(default, "value", default)]


def sample(model: type[BaseModel]) -> dict[str, Any]:
    """A small valid object of `model` (list items: a curriculum stage, a toleration, a
    Secret-backed variable): the first of the candidates that the model accepts."""
    required = {
        info.alias or name: candidates(info.annotation, None)
        for name, info in model.model_fields.items()
        if info.is_required()
    }
    tries = max((len(values) for values in required.values()), default=1)
    for index in range(tries):
        found = {key: values[min(index, len(values) - 1)] for key, values in required.items()}
        try:
            model.model_validate(found)
        except ValidationError:
            continue
        return found
    raise AssertionError(f"no valid sample of {model.__name__}: extend candidates()")


def exclusive_groups(model: type[BaseModel]) -> list[list[str]]:
    """The `exactly_one(...)` groups of a model, as aliases (from its CEL messages)."""
    extra = model.model_config.get("json_schema_extra")
    rules = extra.get("x-kubernetes-validations", []) if isinstance(extra, dict) else []
    prefix = "set exactly one of: "
    return [
        rule["message"][len(prefix) :].split(", ")
        for rule in rules
        if isinstance(rule, dict) and rule.get("message", "").startswith(prefix)
    ]


def spec_with(
    kind: Kind, leaf: Leaf, value: Any = None, *, set_leaf: bool, alternative: int = 0
) -> dict[str, Any]:
    """The kind's base spec, with what `leaf` needs around it, and with `value` in it.

    Where an enclosing object needs exactly one of several fields (a judge's
    `inferenceService` or `url`), `alternative` picks the one that is set."""
    spec = copy.deepcopy(BASE_SPECS[kind.kind])
    if leaf.aliases[0] == "slurm" or (leaf.aliases[0] == "backend" and set_leaf):
        spec["backend"] = "slurm"
    node = spec
    for depth, alias in enumerate(leaf.aliases):
        model = leaf.models[depth]
        for group in exclusive_groups(model):
            if alias in group:
                if not set_leaf:
                    continue
                for other in group:  # the leaf is one of the alternatives: drop the others
                    if other != alias:
                        node.pop(other, None)
            elif not any(member in node for member in group):
                chosen = group[alternative % len(group)]
                annotation = model.model_fields[_field(model, chosen)].annotation
                node[chosen] = candidates(annotation, None)[0]
        if depth == len(leaf.aliases) - 1:
            if set_leaf:
                node[alias] = value
        else:
            node = node.setdefault(alias, {})
    if leaf.aliases[0] == "backend" and set_leaf:
        spec["backend"] = value
    return spec


def _field(model: type[BaseModel], alias: str) -> str:
    return next(name for name, info in model.model_fields.items() if (info.alias or name) == alias)


def rendered_job(kind: Kind, spec: dict[str, Any]) -> str | None:
    """What the operator submits for `spec` (None if it is Invalid)."""
    resource = Resource(kind.kind, "probe", "ns", "uid-probe", 1, spec, {})
    tracking = (spec.get("mlflow") or {}).get("trackingUri") or "http://mlflow"
    observed = Observed(tracking_uri=tracking, input=INPUT, judge=JUDGE)
    plan = reconcile(resource, parse(resource, allowing(spec)), observed, NOW)
    if plan.status["phase"] == "Invalid":
        return None
    parts: list[str] = []
    for action in plan.actions:
        if isinstance(action, ApplyChildren):
            parts.append(json.dumps(action.objects, sort_keys=True))
        elif isinstance(action, SubmitSlurm):
            parts += [repr(dataclasses.asdict(action.request)), render_script(action.request)]
    return "\n".join(parts)


def allowing(spec: dict[str, Any]) -> TenancyPolicy:
    """An admin policy that allows what `spec` chooses (the policy has its own tests)."""
    options = spec.get("kubernetes") or {}
    return TenancyPolicy(
        service_accounts=[options.get("serviceAccountName") or "default"],
        priority_classes=[options.get("priorityClassName") or "none"],
        toleration_keys=[t.get("key") or "" for t in options.get("tolerations", [])],
        tracking_uris=[(spec.get("mlflow") or {}).get("trackingUri") or "http://mlflow"],
    )


def operator_only(leaf: Leaf) -> bool:
    return any(leaf.name == entry or leaf.name.startswith(f"{entry}.") for entry in OPERATOR_ONLY)


WORK_KINDS = (TRAINING_RUN, ALIGNMENT, EVALUATION)
CASES = [  # operator-only fields take effect in the operator, not in the job: not walked
    pytest.param(kind, leaf, id=f"{kind.kind}.{leaf.crd_name}")
    for kind in WORK_KINDS
    for leaf in leaves(kind.spec)
    if not operator_only(leaf)
]


@pytest.mark.parametrize(("kind", "leaf"), CASES)
def test_every_spec_field_reaches_the_job_or_is_operator_only(kind: Kind, leaf: Leaf) -> None:
    tried = []
    for alternative in range(3):
        baseline = rendered_job(
            kind, spec_with(kind, leaf, set_leaf=False, alternative=alternative)
        )
        if baseline is None:  # this alternative needs a value the filler did not give
            continue
        for value in candidates(leaf.annotation, leaf.default):
            probe = spec_with(kind, leaf, value, set_leaf=True, alternative=alternative)
            rendered = rendered_job(kind, probe)
            if rendered is not None and rendered != baseline:
                return
            tried.append(value)
    assert tried, f"no base spec for {leaf.crd_name} is valid: extend candidates()"
    raise AssertionError(
        f"spec.{leaf.crd_name} of {kind.kind} changes nothing in the job for any of {tried}: "
        "map it in operator/workloads/recipe.py, or add it to OPERATOR_ONLY with the reason"
    )


def test_operator_only_entries_are_fields() -> None:
    names = {leaf.name for kind in WORK_KINDS for leaf in leaves(kind.spec)}
    for entry in OPERATOR_ONLY:
        assert any(n == entry or n.startswith(f"{entry}.") for n in names), entry
