"""Finalizers of SLURM-backed objects, shared by both controllers: cancel the object's
SLURM jobs before it goes, and always let the deletion finish.

A job SLURM no longer knows (purged after `MinJobAge`) or that has already finished
counts as cancelled. While SLURM cannot be reached the cancel is retried with a growing
delay, each try shown in the object's `Deleting` condition, and given up after
`OperatorContext.remote_cancel_attempts` tries with a Warning Event. An admin who knows
the jobs are gone (or accepts that they run on) skips the remote cancel at once with
the annotation `infinitecontext.dev/skip-remote-cancel: "true"`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from infinitecontext.crds.models import GROUP, Condition, Kind
from infinitecontext.operator import conditions as cond
from infinitecontext.operator.backoff import MAX_DELAY_SECONDS as MAX_DELAY_SECONDS
from infinitecontext.operator.backoff import doubling_delay
from infinitecontext.operator.context import OperatorContext
from infinitecontext.slurm_bridge.client import SlurmClient
from infinitecontext.slurm_bridge.errors import JobNotFound, SlurmError, SlurmUnavailable

SKIP_REMOTE_CANCEL = f"{GROUP}/skip-remote-cancel"
DELETING = "Deleting"
FIRST_DELAY_SECONDS = 15

log = logging.getLogger(__name__)

CancelJobs = Callable[[SlurmClient], list[int]]
"""Cancels an object's live SLURM jobs; the ids it cancelled."""


def cancel_live(slurm: SlurmClient, job_ids: Iterable[int]) -> list[int]:
    """Cancel those of `job_ids` that still run or wait; a job SLURM has forgotten or
    that has finished is already done. The ids cancelled."""
    cancelled = []
    for job_id in dict.fromkeys(job_ids):
        try:
            if slurm.get(job_id).finished:
                continue
            slurm.cancel(job_id)
        except JobNotFound:
            continue  # purged after MinJobAge: nothing runs any more
        cancelled.append(job_id)
    return cancelled


def retry_delay(retry: int) -> int:
    """Seconds before the next try: doubling from FIRST_DELAY_SECONDS, capped."""
    return int(doubling_delay(retry, FIRST_DELAY_SECONDS))


def finalize_remote_jobs(
    ctx: OperatorContext, kind: Kind, body: Any, retry: int, cancel: CancelJobs, logger: Any
) -> None:
    """The finalizer: cancel the jobs, retry while SLURM is down, give up when told to
    or after the last try. Returns when the deletion may go on."""
    annotations = body["metadata"].get("annotations") or {}
    if annotations.get(SKIP_REMOTE_CANCEL) == "true":
        kopf.event(
            body,
            type="Warning",
            reason="RemoteCancelSkipped",
            message=f"{SKIP_REMOTE_CANCEL} is set: SLURM jobs are not cancelled; any "
            "that still run are left to SLURM",
        )
        return
    try:
        for job_id in cancel(ctx.slurm()):
            logger.info("cancelled SLURM job %s", job_id)
    except SlurmError as error:  # unreachable, or a refusal an admin may fix (the token)
        attempt = retry + 1
        if attempt >= ctx.remote_cancel_attempts:
            kopf.event(
                body,
                type="Warning",
                reason="RemoteCancelAbandoned",
                message=f"gave up cancelling the SLURM jobs after {attempt} tries; any that "
                f"still run are left to SLURM (key {body['metadata']['uid']}): {error}",
            )
            return
        delay = retry_delay(retry)
        what = "unreachable" if isinstance(error, SlurmUnavailable) else "refused the cancel"
        message = (
            f"SLURM {what}: try {attempt} of {ctx.remote_cancel_attempts}, next in {delay} s; "
            f'annotate {SKIP_REMOTE_CANCEL}="true" to delete without cancelling: {error}'
        )
        _show_deleting(ctx, kind, body, message)
        raise kopf.TemporaryError(message, delay=delay) from error


def _show_deleting(ctx: OperatorContext, kind: Kind, body: Any, message: str) -> None:
    """The try in the object's conditions (status may be written during a deletion)."""
    meta = body["metadata"]
    status = body.get("status") or {}
    current = [Condition.model_validate(c) for c in status.get("conditions") or []]
    updated = cond.set_condition(
        current,
        DELETING,
        "True",
        "RemoteCancelRetrying",
        message[:1000],
        datetime.now(UTC),
        meta.get("generation"),
    )
    listed = [c.model_dump(by_alias=True, mode="json", exclude_none=True) for c in updated]
    try:
        with ctx.locks[meta["uid"]]:
            ctx.kube.patch_status(kind, meta["name"], meta["namespace"], {"conditions": listed})
    except ApiException as error:  # shown in the log instead; the retry goes on regardless
        log.warning("cannot show the cancel's retry on %s: %s", meta["name"], error.reason)
