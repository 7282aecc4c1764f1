"""InferenceService: pure planners of revisions, rollouts, rollbacks and children.

`parse(isvc)` types the spec once per pass (an invalid one goes to `invalid_plan`);
`plan_inference(isvc, spec, observed, now)` takes the object, its spec, what
`observe.py` observed (the resolved model version, the two Deployments, crash-looping
revisions, the gate's Evaluation) and the time, and returns the next status and the
objects to apply or delete (rendered by `children.py`). Nothing here talks to the API
server; `apply.py` does. SLURM-backed services are planned by `slurm.py`.

Revisions. Each distinct served template (model version, resources, Kubernetes and
server options) is a revision, numbered from 1. At most one revision is `Progressing`;
`stableRevision` serves the traffic. A revision ends `Stable` (promoted, the previous
stable becomes `Superseded`/`Replaced`), `RolledBack` (progress deadline, crash loop or
failed gate) or `Superseded`/`Abandoned` (the spec moved on before it finished).

Children: the Deployment `<name>` runs the stable revision (or, with RollingUpdate, the
new one as it rolls); `<name>-canary` runs the canary revision during a Canary rollout.
Both carry `infinitecontext.dev/inferenceservice: <name>`, which the Service, the PDB
and the scale subresource's selector match, so traffic splits by replica count.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import ValidationError

from infinitecontext.crds.models import (
    Backend,
    Condition,
    InferenceServiceSpec,
    InferenceServiceStatus,
    Phase,
    Revision,
    RolloutGate,
    ServedTemplate,
)
from infinitecontext.operator import conditions as cond
from infinitecontext.operator.inference.children import (
    CANARY,
    HTTPROUTE_REF,
    LABEL_REVISION,
    LABEL_ROLE,
    STABLE,
    ChildRef,
    autoscaler_children,
    deployment,
    http_route,
    pod_disruption_budget,
    role_service,
    selector,
    service,
    service_name,
    service_url,
)
from infinitecontext.operator.resource import Event, Resource
from infinitecontext.operator.tenancy import FORBIDDEN, ForbiddenSpec, TenancyPolicy, admit

HISTORY_LIMIT = 10

AVAILABLE = "Available"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
ROLLED_BACK = "RolledBack"

REPLACED = "Replaced"  # a stable revision that a newer one replaced
ABANDONED = "Abandoned"  # a rollout the spec moved away from

Verdict = Literal["Passed", "Failed", "Waiting"]


# ---------------------------------------------------------------- inputs


@dataclass(frozen=True)
class DeploymentState:
    """What the Deployment controller reports for one of our Deployments."""

    revision: int | None
    """The revision label of its pod template."""
    replicas: int
    ready_replicas: int = 0
    available_replicas: int = 0
    updated_replicas: int = 0
    status_replicas: int = 0
    generation: int = 1
    observed_generation: int = 1

    @property
    def rolled_out(self) -> bool:
        """Every replica runs the current template and is ready; no old pod is left."""
        return (
            self.observed_generation >= self.generation
            and self.updated_replicas >= self.replicas
            and self.ready_replicas >= self.replicas
            and self.available_replicas >= self.replicas
            and self.status_replicas <= self.replicas
        )


@dataclass(frozen=True)
class GateState:
    verdict: Verdict
    message: str


@dataclass(frozen=True)
class InferenceObserved:
    model_uri: str | None = None
    """The resolved model version; None while it cannot be resolved."""
    model_message: str = ""
    stable: DeploymentState | None = None
    canary: DeploymentState | None = None
    crashlooping: dict[int, str] = field(default_factory=dict)
    """Revision → why its pods are crash-looping."""
    gate: GateState | None = None
    """The gate's verdict for the progressing revision (None: no gate in the spec)."""
    keda: bool = False
    """KEDA's ScaledObject CRD is installed."""
    gateway_api: bool = False
    """The Gateway API's HTTPRoute CRD is installed."""
    tracking_uri: str = ""
    prometheus_url: str = ""
    """Where KEDA queries the load (the operator's setting)."""


@dataclass(frozen=True)
class InferencePlan:
    status: dict[str, Any]
    apply: list[dict[str, Any]] = field(default_factory=list)
    delete: list[ChildRef] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


# ---------------------------------------------------------------- small pure helpers


def served_template(spec: InferenceServiceSpec, model_uri: str) -> ServedTemplate:
    return ServedTemplate(
        model_uri=model_uri,
        resources=spec.resources,
        kubernetes=spec.kubernetes,
        slurm=spec.slurm,
        server=spec.server,
        secret_env=spec.secret_env or None,
    )


def template_hash(template: ServedTemplate) -> str:
    data = template.model_dump(by_alias=True, mode="json", exclude_none=True)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def canary_steps(percent: int, steps: list[int]) -> list[int]:
    """The traffic shares a canary goes through: canaryPercent, the larger steps, 100."""
    return sorted({percent, *(s for s in steps if s > percent), 100})


def canary_replicas(total: int, percent: int) -> int:
    """Replicas of the canary at `percent`: at least one, so the canary is tested."""
    return max(1, math.ceil(total * percent / 100))


def stable_replicas_beside(total: int, canary: int) -> int:
    """Stable replicas next to a canary: the rest, but never zero while total > 0 (a
    one-replica service runs a second, canary replica rather than no stable one)."""
    return max(total - canary, 1 if total > 0 else 0)


def parse_model_uri(uri: str) -> tuple[str, str]:
    """`models:/name/version` → (name, version)."""
    body = uri.removeprefix("models:/")
    name, _, version = body.rpartition("/")
    if not uri.startswith("models:/") or not name or not version:
        raise ValueError(f"{uri!r} is not models:/NAME/VERSION")
    return name, version


def gate_verdict(gate: RolloutGate, evaluation: dict[str, Any] | None, model_uri: str) -> GateState:
    """Whether the gate's Evaluation has passed for `model_uri` (its own or stricter
    thresholds)."""
    name = gate.evaluation
    if evaluation is None:
        return GateState("Waiting", f"Evaluation {name} does not exist")
    status = evaluation.get("status") or {}
    evaluated = (status.get("inputModel") or {}).get("uri")
    if evaluated != model_uri:
        return GateState("Waiting", f"Evaluation {name} evaluates {evaluated}, not {model_uri}")
    phase = status.get("phase")
    if phase == Phase.FAILED:
        return GateState("Failed", f"Evaluation {name} failed")
    if phase != Phase.SUCCEEDED:
        return GateState("Waiting", f"Evaluation {name} is {phase or 'Pending'}")
    results = status.get("results") or {}
    failure = _below_thresholds(gate, results)
    if failure:
        return GateState("Failed", f"Evaluation {name}: {failure}")
    if gate.thresholds is None and results.get("passed") is False:
        return GateState("Failed", f"Evaluation {name} did not pass its thresholds")
    return GateState("Passed", f"Evaluation {name} passed for {model_uri}")


def _below_thresholds(gate: RolloutGate, results: dict[str, Any]) -> str:
    if gate.thresholds is None:
        return ""
    accuracy = results.get("passkeyAccuracy")
    wanted = gate.thresholds.passkey_accuracy
    if accuracy is None or accuracy < wanted:
        return f"passkey accuracy {accuracy} < {wanted}"
    judge, wanted_judge = results.get("judgeScore"), gate.thresholds.judge_score
    if wanted_judge is not None and (judge is None or judge < wanted_judge):
        return f"judge score {judge} < {wanted_judge}"
    return ""


CRASH_RESTARTS = 3
"""Restarts after which a revision's container counts as crash-looping."""


def deployment_state(obj: dict[str, Any]) -> DeploymentState:
    """A Deployment as the planner needs it (`obj` as the API server returns it)."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    revision = labels.get(LABEL_REVISION)
    return DeploymentState(
        revision=int(revision) if revision and revision.isdigit() else None,
        replicas=int(spec.get("replicas") or 0),
        ready_replicas=int(status.get("readyReplicas") or 0),
        available_replicas=int(status.get("availableReplicas") or 0),
        updated_replicas=int(status.get("updatedReplicas") or 0),
        status_replicas=int(status.get("replicas") or 0),
        generation=int((obj.get("metadata") or {}).get("generation") or 1),
        observed_generation=int(status.get("observedGeneration") or 0),
    )


def deployments_by_role(objs: list[dict[str, Any]]) -> dict[str, DeploymentState]:
    found = {}
    for obj in objs:
        role = ((obj.get("metadata") or {}).get("labels") or {}).get(LABEL_ROLE)
        if role in (STABLE, CANARY):
            found[role] = deployment_state(obj)
    return found


def crashlooping_revisions(pods: list[dict[str, Any]]) -> dict[int, str]:
    """Revisions with a container in CrashLoopBackOff or restarted CRASH_RESTARTS times."""
    found: dict[int, str] = {}
    for pod in pods:
        meta = pod.get("metadata") or {}
        revision = (meta.get("labels") or {}).get(LABEL_REVISION, "")
        if not revision.isdigit():
            continue
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (container.get("state") or {}).get("waiting") or {}
            restarts = int(container.get("restartCount") or 0)
            if waiting.get("reason") == "CrashLoopBackOff" or restarts >= CRASH_RESTARTS:
                found[int(revision)] = (
                    f"pod {meta.get('name')}: container {container.get('name')} restarted "
                    f"{restarts} times ({waiting.get('reason') or 'restarting'})"
                )
    return found


# ---------------------------------------------------------------- the revision state machine


class RolloutState:
    """The next status of one pass, with the events it produces."""

    def __init__(self, isvc: Resource, spec: InferenceServiceSpec, now: datetime) -> None:
        self.isvc, self.spec, self.now = isvc, spec, now
        self.status = parse_status(isvc.status)
        self.status.observed_generation = isvc.generation
        self.events: list[Event] = []

    # -- lookups
    def revision(self, number: int | None) -> Revision | None:
        return next((rev for rev in self.status.revisions if rev.revision == number), None)

    @property
    def stable(self) -> Revision | None:
        return self.revision(self.status.stable_revision)

    @property
    def progressing(self) -> Revision | None:
        return next((rev for rev in self.status.revisions if rev.outcome == "Progressing"), None)

    def event(self, reason: str, message: str, warning: bool = False) -> None:
        self.events.append(Event("Warning" if warning else "Normal", reason, message))

    def was_stable(self, digest: str | None) -> bool:
        return any(
            rev.template_hash == digest
            and (
                rev.outcome == "Stable" or (rev.outcome == "Superseded" and rev.reason == REPLACED)
            )
            for rev in self.status.revisions
        )

    # -- transitions
    def track(self, desired: ServedTemplate) -> None:
        """Start a revision when the desired template is new; drop an abandoned one."""
        digest = template_hash(desired)
        current = self.progressing
        if current is not None and current.template_hash == digest:
            return
        stable = self.stable
        if stable is not None and stable.template_hash == digest:
            if current is not None:
                self.end(current, "Superseded", ABANDONED)
                self.event("RolloutAborted", f"spec is back at revision {stable.revision}")
            return
        latest = max(self.status.revisions, key=lambda rev: rev.revision, default=None)
        if latest is not None and latest.template_hash == digest:
            return  # the spec still asks for a revision that was rolled back: stay put
        if current is not None:
            self.end(current, "Superseded", ABANDONED)
        number = (latest.revision if latest else 0) + 1
        self.status.revisions.append(
            Revision(
                revision=number,
                model_version=desired.model_uri,
                started=self.now,
                outcome="Progressing",
                template_hash=digest,
                template=desired,
            )
        )
        self.status.revisions = _trim(self.status.revisions, self.status.stable_revision)
        self.event("NewRevision", f"revision {number} serves {desired.model_uri}")

    def end(self, revision: Revision, outcome: Any, reason: str) -> None:
        revision.outcome = outcome
        revision.reason = reason
        self.status.canary_revision = None
        self.status.canary_percent = None
        self.status.step_started = None

    def promote(self, revision: Revision) -> None:
        old = self.stable
        if old is not None:
            old.outcome, old.reason = "Superseded", REPLACED
            self.status.previous_rolled_out_model = old.model_version
        self.end(revision, "Stable", "Promoted")
        self.status.stable_revision = revision.revision
        self.status.latest_rolled_out_model = revision.model_version
        self.event("Promoted", f"revision {revision.revision} ({revision.model_version}) is stable")

    def roll_back(self, revision: Revision, reason: str, message: str) -> None:
        self.end(revision, "RolledBack", reason)
        revision.message = message[:500]
        stable = self.stable
        to = f"revision {stable.revision}" if stable else "no revision (none was ever ready)"
        self.event(
            "RolledBack",
            f"revision {revision.revision} ({revision.model_version}) rolled back to {to}: "
            f"{message}",
            warning=True,
        )

    def start_step(self) -> datetime:
        if self.status.step_started is None:
            self.status.step_started = self.now
        return self.status.step_started

    def past_deadline(self) -> bool:
        started = self.start_step()
        return (self.now - started).total_seconds() > self.spec.rollout.progress_deadline_seconds


def parse_status(raw: dict[str, Any]) -> InferenceServiceStatus:
    try:
        return InferenceServiceStatus.model_validate(raw or {})
    except ValidationError:
        return InferenceServiceStatus()


def _trim(revisions: list[Revision], keep: int | None) -> list[Revision]:
    """The newest HISTORY_LIMIT revisions, always with the stable one."""
    newest = sorted(revisions, key=lambda rev: rev.revision)[-HISTORY_LIMIT:]
    kept = [rev for rev in revisions if rev.revision == keep and rev not in newest]
    return sorted(kept + newest, key=lambda rev: rev.revision)


def advance(rollout: RolloutState, observed: InferenceObserved) -> str:
    """Move the progressing revision on; returns the Progressing condition's reason."""
    revision = rollout.progressing
    if revision is None:
        return ""
    if revision.revision in observed.crashlooping:
        rollout.roll_back(revision, "CrashLoopBackOff", observed.crashlooping[revision.revision])
        return ""
    gated = rollout.spec.rollout.gate is not None and not rollout.was_stable(revision.template_hash)
    gate = observed.gate or GateState("Waiting", "the gate's Evaluation was not observed")
    if gated and gate.verdict == "Failed":
        rollout.roll_back(revision, "GateFailed", gate.message)
        return ""
    may_take_all = not gated or gate.verdict == "Passed"
    if rollout.spec.rollout.strategy == "Canary" and rollout.stable is not None:
        return _advance_canary(rollout, revision, observed, may_take_all)
    return _advance_rolling(rollout, revision, observed, may_take_all)


def _advance_rolling(
    rollout: RolloutState, revision: Revision, observed: InferenceObserved, may_take_all: bool
) -> str:
    if not may_take_all and rollout.status.step_started is None:
        return "WaitingForGate"  # once rolling, only a failed gate stops it
    rollout.start_step()
    deployed = observed.stable
    if deployed is not None and deployed.revision == revision.revision and deployed.rolled_out:
        rollout.promote(revision)
        return ""
    if rollout.past_deadline():
        rollout.roll_back(revision, "ProgressDeadlineExceeded", _deadline_message(rollout))
        return ""
    return "RollingUpdate"


def _advance_canary(
    rollout: RolloutState, revision: Revision, observed: InferenceObserved, may_take_all: bool
) -> str:
    steps = canary_steps(rollout.spec.rollout.canary_percent, rollout.spec.rollout.steps)
    if rollout.status.canary_revision != revision.revision or rollout.status.canary_percent is None:
        rollout.status.canary_revision, rollout.status.canary_percent = revision.revision, steps[0]
        rollout.status.step_started = rollout.now
        rollout.event(
            "CanaryStarted", f"revision {revision.revision} takes {steps[0]}% of replicas"
        )
    percent = rollout.status.canary_percent
    if percent >= 100:  # promoting: the stable Deployment rolls to the new revision
        rolling = _advance_rolling(rollout, revision, observed, True)
        return "Promoting" if rolling else ""
    canary = observed.canary
    total = rollout.spec.replicas
    ready = (
        canary is not None
        and canary.revision == revision.revision
        and canary.replicas == canary_replicas(total, percent)
        and canary.rolled_out
    )
    if not ready:
        if rollout.past_deadline():
            rollout.roll_back(revision, "ProgressDeadlineExceeded", _deadline_message(rollout))
            return ""
        return "CanaryStep"
    started = rollout.start_step()
    if (rollout.now - started).total_seconds() < rollout.spec.rollout.step_interval_seconds:
        return "CanaryStep"
    following = next(s for s in steps if s > percent)
    if following >= 100 and not may_take_all:
        return "WaitingForGate"
    rollout.status.canary_percent, rollout.status.step_started = following, rollout.now
    rollout.event("CanaryStep", f"revision {revision.revision} takes {following}% of replicas")
    return "Promoting" if following >= 100 else "CanaryStep"


def _deadline_message(rollout: RolloutState) -> str:
    seconds = rollout.spec.rollout.progress_deadline_seconds
    return f"not ready within progressDeadlineSeconds ({seconds} s)"


# ---------------------------------------------------------------- children


def kubernetes_children(
    rollout: RolloutState, observed: InferenceObserved
) -> tuple[list[dict[str, Any]], list[ChildRef]]:
    """Deployments, Service, PDB and autoscaler for the status this pass arrived at."""
    isvc, spec, status = rollout.isvc, rollout.spec, rollout.status
    total = spec.replicas
    deadline = spec.rollout.progress_deadline_seconds
    uri = observed.tracking_uri
    apply: list[dict[str, Any]] = []
    canary_ref = ChildRef("apps/v1", "Deployment", service_name(isvc.name, CANARY))
    delete: list[ChildRef] = []
    progressing, stable = rollout.progressing, rollout.stable
    canary = rollout.revision(status.canary_revision)
    percent = status.canary_percent or 0
    if canary is not None and progressing is canary and percent < 100:
        n = canary_replicas(total, percent)
        apply.append(deployment(isvc, CANARY, canary, n, deadline, uri))
        if stable is not None:
            beside = stable_replicas_beside(total, n)
            apply.append(deployment(isvc, STABLE, stable, beside, deadline, uri))
    else:
        rolling = progressing is not None and status.step_started is not None
        target = progressing if rolling else stable
        if target is not None:
            apply.append(deployment(isvc, STABLE, target, total, deadline, uri))
        # While promoting, the canary keeps serving until the stable Deployment has rolled.
        promoting = canary is not None and progressing is canary and percent >= 100
        if canary is not None and promoting and observed.canary is not None:
            apply.append(deployment(isvc, CANARY, canary, observed.canary.replicas, deadline, uri))
        else:
            delete.append(canary_ref)
    if apply:
        apply += [service(isvc, spec.server.port), pod_disruption_budget(isvc)]
        scalers, unused = autoscaler_children(
            isvc, spec.autoscaling, observed.keda, observed.prometheus_url
        )
        apply += scalers
        delete += unused
        splitting = canary is not None and progressing is canary and percent < 100
        routes, unused = gateway_children(rollout, observed, percent if splitting else 0)
        apply += routes
        delete += unused
    return apply, delete


def gateway_children(
    rollout: RolloutState, observed: InferenceObserved, canary_percent: int
) -> tuple[list[dict[str, Any]], list[ChildRef]]:
    """With a Gateway named and the Gateway API installed, an HTTPRoute weighted by the
    canary's share over per-role Services (the replica split stays as it is)."""
    gateway, port = rollout.spec.rollout.gateway, rollout.spec.server.port
    if not observed.gateway_api:
        return [], []
    if gateway is None:
        return [], [ChildRef(*HTTPROUTE_REF, service_name(rollout.isvc.name))]
    services = [role_service(rollout.isvc, role, port) for role in (STABLE, CANARY)]
    return [*services, http_route(rollout.isvc, gateway, port, canary_percent)], []


# ---------------------------------------------------------------- status


def _conditions(rollout: RolloutState, observed: InferenceObserved, progress_reason: str) -> None:
    status, spec = rollout.status, rollout.spec
    deployments = [d for d in (observed.stable, observed.canary) if d is not None]
    status.replicas = sum(d.status_replicas for d in deployments)
    status.ready_replicas = sum(d.ready_replicas for d in deployments)
    status.selector = selector(rollout.isvc.name)
    name = service_name(rollout.isvc.name)
    status.url = service_url(name, rollout.isvc.namespace, spec.server.port)

    def set_(type_: str, value: cond.Status, reason: str, message: str = "") -> None:
        status.conditions = cond.set_condition(
            status.conditions, type_, value, reason, message, rollout.now, rollout.isvc.generation
        )

    stable = rollout.stable
    if status.ready_replicas > 0:
        set_(AVAILABLE, "True", "MinimumReplicasAvailable", f"{status.ready_replicas} ready")
    elif spec.replicas == 0:
        set_(AVAILABLE, "False", "ScaledToZero", "spec.replicas is 0")
    else:
        set_(AVAILABLE, "False", "NoReplicaReady", "no replica is ready yet")

    progressing = rollout.progressing
    failed = _desired_rolled_back(rollout, observed)
    message = ""
    if failed is not None:
        message = (
            f"revision {failed.revision} ({failed.model_version}) was rolled back: "
            f"{failed.message or failed.reason}; change the spec (or set it back) to roll out "
            "again"
        )
    if progressing is not None:
        progress = _progress_message(rollout, progressing, progress_reason, observed)
        set_(PROGRESSING, "True", progress_reason or "NewRevision", progress)
    elif observed.model_uri is None:
        set_(PROGRESSING, "True", "WaitingForModel", observed.model_message)
    elif failed is not None:  # the rollout ended, but not complete: say how
        set_(PROGRESSING, "False", failed.reason or "RolledBack", message)
    else:
        set_(PROGRESSING, "False", "RolloutComplete", "no rollout in progress")

    if failed is not None:
        set_(ROLLED_BACK, "True", failed.reason or "RolledBack", message)
        set_(DEGRADED, "True", failed.reason or "RolledBack", message)
    else:
        set_(ROLLED_BACK, "False", "NoRollback", "")
        set_(DEGRADED, "False", "AsExpected", "")

    if stable is not None and status.ready_replicas > 0:
        message = (
            f"revision {stable.revision} ({stable.model_version}) serves; "
            f"{status.ready_replicas}/{status.replicas} replicas ready"
        )
        set_(cond.READY, "True", "Serving", message)
    else:
        set_(cond.READY, "False", "NotServing", "no stable revision has ready replicas")
    status.phase = (
        Phase.DEGRADED
        if cond.is_true(status.conditions, DEGRADED)
        else Phase.PROGRESSING
        if cond.is_true(status.conditions, PROGRESSING)
        else Phase.AVAILABLE
        if cond.is_true(status.conditions, cond.READY)
        else Phase.PENDING
    )


def _progress_message(
    rollout: RolloutState, revision: Revision, reason: str, observed: InferenceObserved
) -> str:
    head = f"revision {revision.revision} ({revision.model_version})"
    if reason == "WaitingForGate":
        gate = observed.gate.message if observed.gate else "not observed"
        return f"{head} waits for its gate: {gate}"
    if rollout.status.canary_percent is not None and reason == "CanaryStep":
        return f"{head} is a canary at {rollout.status.canary_percent}% of replicas"
    if reason == "Promoting":
        return f"{head} is being promoted to all replicas"
    return f"{head} is rolling out"


def _desired_rolled_back(rollout: RolloutState, observed: InferenceObserved) -> Revision | None:
    """The revision the spec asks for, when it is the one that was rolled back."""
    if observed.model_uri is None:
        return None
    digest = template_hash(served_template(rollout.spec, observed.model_uri))
    latest = max(
        (x for x in rollout.status.revisions if x.template_hash == digest),
        key=lambda x: x.revision,
        default=None,
    )
    return latest if latest is not None and latest.outcome == "RolledBack" else None


# ---------------------------------------------------------------- the planner


@dataclass(frozen=True)
class InvalidSpec:
    """Why the spec cannot be served (the planner's InvalidSpec path says so)."""

    message: str
    reason: str = "InvalidSpec"
    """`InvalidSpec`, or `Forbidden` where the admin's policy refuses it."""


def parse(
    isvc: Resource, policy: TenancyPolicy | None = None
) -> InferenceServiceSpec | InvalidSpec:
    """The typed spec, parsed and checked against the admin's policy once at the top of
    a pass (either backend), before MLflow or SLURM is reached."""
    try:
        spec = InferenceServiceSpec.model_validate(isvc.spec)
        check_semantics(spec)
        spec = admit(spec, policy or TenancyPolicy(), isvc.namespace)
    except ForbiddenSpec as error:
        return InvalidSpec(str(error), FORBIDDEN)
    except (ValidationError, ValueError) as error:
        return InvalidSpec(_error_text(error))
    return spec


def plan_inference(
    isvc: Resource, spec: InferenceServiceSpec, observed: InferenceObserved, now: datetime
) -> InferencePlan:
    """The next status and children of a Kubernetes-backed InferenceService."""
    rollout = RolloutState(isvc, spec, now)
    if observed.model_uri is not None:
        rollout.track(served_template(spec, observed.model_uri))
    reason = advance(rollout, observed)
    apply, delete = kubernetes_children(rollout, observed)
    _conditions(rollout, observed, reason)
    status = rollout.status.model_dump(by_alias=True, mode="json", exclude_none=True)
    return InferencePlan(status, apply, delete, _with_phase_event(isvc, rollout))


def _with_phase_event(isvc: Resource, rollout: RolloutState) -> list[Event]:
    before = (isvc.status or {}).get("phase")
    if before == rollout.status.phase:
        return rollout.events
    ready = cond.find(rollout.status.conditions, cond.READY)
    phase_event = Event("Normal", str(rollout.status.phase), ready.message if ready else "")
    return [*rollout.events, phase_event]


def check_semantics(spec: InferenceServiceSpec) -> None:
    """What the CRD's CEL rules say, for objects that did not pass the API server."""
    ref = spec.model
    if sum(x is not None for x in (ref.training_run, ref.alignment, ref.mlflow)) != 1:
        raise ValueError("model: set exactly one of trainingRun, alignment, mlflow")
    if spec.autoscaling.min_replicas > spec.autoscaling.max_replicas:
        raise ValueError("autoscaling: minReplicas must not exceed maxReplicas")
    if spec.backend == Backend.SLURM and (spec.server.api_key or spec.secret_env):
        raise ValueError("server.apiKey, secretEnv: not supported on the slurm backend yet")


def _error_text(error: Exception) -> str:
    if isinstance(error, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
    return str(error)


def status_conditions(isvc: Resource) -> list[Condition]:
    return parse_status(isvc.status).conditions


def invalid_plan(isvc: Resource, invalid: InvalidSpec, now: datetime) -> InferencePlan:
    """Degraded with the refusal's reason (`InvalidSpec`, `Forbidden` by the admin's
    policy, or `Rejected` where a backend refused the spec); nothing is applied or
    deleted (either backend)."""
    status = parse_status(isvc.status)
    before = cond.find(status.conditions, cond.READY)
    status.observed_generation = isvc.generation
    status.phase = Phase.DEGRADED
    text = invalid.message[:1000]
    for type_ in (cond.READY, DEGRADED):
        value: cond.Status = "False" if type_ == cond.READY else "True"
        status.conditions = cond.set_condition(
            status.conditions, type_, value, invalid.reason, text, now, isvc.generation
        )
    dumped = status.model_dump(by_alias=True, mode="json", exclude_none=True)
    said = before is not None and (before.reason, before.message) == (invalid.reason, text)
    events = [] if said else [Event("Warning", invalid.reason, text)]
    return InferencePlan(dumped, events=events)


# ---------------------------------------------------------------- manual rollback


def rollback_target(status: dict[str, Any], to_revision: int | None) -> Revision:
    """The revision `icx rollback` returns to: the one asked for, else the stable one
    when the spec asks for a rolled-back revision, else the previous stable one."""
    parsed = parse_status(status)
    by_number = {rev.revision: rev for rev in parsed.revisions}
    if to_revision is not None:
        if to_revision not in by_number:
            raise ValueError(f"revision {to_revision} is not in the history {sorted(by_number)}")
        return by_number[to_revision]
    latest = max(parsed.revisions, key=lambda rev: rev.revision, default=None)
    stable = by_number.get(parsed.stable_revision or -1)
    if latest is not None and latest.outcome in ("RolledBack", "Progressing") and stable:
        return stable
    previous = [
        rev for rev in parsed.revisions if rev.outcome == "Superseded" and rev.reason == REPLACED
    ]
    if not previous:
        raise ValueError("no earlier stable revision to roll back to")
    return max(previous, key=lambda rev: rev.revision)


def rollback_patch(revision: Revision) -> dict[str, Any]:
    """A JSON merge patch that sets the spec back to what `revision` served."""
    if revision.template is None:
        raise ValueError(f"revision {revision.revision} has no recorded template")
    template = revision.template
    name, version = parse_model_uri(template.model_uri)

    def dump(value: Any) -> Any:
        return None if value is None else value.model_dump(by_alias=True, mode="json")

    return {
        "spec": {
            "model": {
                "mlflow": {"name": name, "version": version, "alias": None},
                "trainingRun": None,
                "alignment": None,
            },
            "resources": dump(template.resources),
            "kubernetes": dump(template.kubernetes),
            "slurm": dump(template.slurm),
            "server": dump(template.server),
        }
    }
