"""Which errors of a pass are permanent: a refusal that the same spec would get again.

The project's rule: a semantic or permanent error becomes `Ready=False` with a reason and
is not retried until the spec changes; an unreachable backend is retried with backoff.
`refusal` sorts an exception raised while acting on a plan into the first kind (with
the condition's reason and message) or lets the caller treat it as the second.
"""

from __future__ import annotations

import json

from infinitecontext.operator import registry
from infinitecontext.operator.conditions import INVALID_SPEC, REJECTED, Refusal
from infinitecontext.slurm_bridge.errors import InvalidJobRequest, SlurmAuthError, SlurmRejected

# The API server's answers to a request it will never accept as it is: 400 Bad Request
# and 422 Unprocessable Entity (a child that fails validation, e.g. an invalid name).
_INVALID_REQUEST_STATUSES = frozenset({400, 422})


def refusal(error: BaseException) -> Refusal | None:
    """The condition that `error` calls for when it is permanent; None when it is not."""
    if isinstance(error, InvalidJobRequest):
        return Refusal(INVALID_SPEC, f"the SLURM job request is invalid: {error}")
    if isinstance(error, SlurmRejected) and not isinstance(error, SlurmAuthError):
        return Refusal(REJECTED, f"SLURM refused the job: {error}")
    if isinstance(error, registry.RegistryRejected):
        return Refusal(REJECTED, str(error))
    status = getattr(error, "status", None)
    if _is_api_exception(error) and status in _INVALID_REQUEST_STATUSES:
        return Refusal(REJECTED, f"the API server refused a child: {_api_message(error)}")
    return None


def _is_api_exception(error: BaseException) -> bool:
    from kubernetes.client.exceptions import ApiException
    from kubernetes.dynamic.exceptions import DynamicApiError

    return isinstance(error, ApiException | DynamicApiError)


def _api_message(error: BaseException) -> str:
    """The API server's own message (its Status body), else the error's text."""
    body = getattr(error, "body", None)
    try:
        message = json.loads(body or "")["message"]
    except (ValueError, KeyError, TypeError):
        return str(error)[:500]
    return str(message)
