"""The operator's log lines: plain text (the default) or one JSON object a line
(`--log-format json`, kopf's `LogFormat.JSON`), and the object a line is about in both.

kopf tags its own per-object lines with the object (`k8s_ref`: apiVersion, kind,
namespace, name, uid); our modules log through plain module loggers, which know nothing
of it. `about(body)` records the object for the duration of a pass in a context
variable (kopf copies the context into the thread that runs a sync handler), and a
filter on the log handler tags every line logged meanwhile with it: the JSON line's
`object` field, or the `[namespace/name]` prefix of a plain line.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

# The object the current pass is about; None outside a pass (start-up, peering, ...).
_OBJECT: ContextVar[dict[str, Any] | None] = ContextVar("icx_log_object", default=None)


class LogFormat(enum.StrEnum):
    plain = "plain"
    json = "json"


def reference(body: Any) -> dict[str, Any]:
    """The fields kopf itself puts in a line's object reference."""
    metadata = body.get("metadata", {})
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "name": metadata.get("name"),
        "uid": metadata.get("uid"),
        "namespace": metadata.get("namespace"),
    }


@contextmanager
def about(body: Any) -> Iterator[None]:
    """Every line logged inside is tagged with `body`'s object."""
    token = _OBJECT.set(reference(body))
    try:
        yield
    finally:
        _OBJECT.reset(token)


class ObjectReferenceFilter(logging.Filter):
    """Tags a line that has no object of its own with the one of the current pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        ref = _OBJECT.get()
        if ref is not None and not hasattr(record, "k8s_ref"):
            record.k8s_ref = ref
        return True


class WithoutTimerSuccess(logging.Filter):
    """Drops kopf's "Timer 'poll' succeeded.", one line per object per poll interval,
    which buried everything else; a timer that fails is still logged (and retried)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("Timer ") and message.endswith(" succeeded."))


def configure(log_format: LogFormat, verbose: bool) -> None:
    """kopf's root log handler in `log_format` (plain lines with their time, logger and
    level), with object references on our lines too; without the timer flood unless
    `verbose` (which also logs at DEBUG)."""
    import kopf  # not at import: `icx` imports this module in images without kopf

    kopf.configure(
        verbose=verbose,
        debug=False,
        quiet=False,
        log_format=kopf.LogFormat.JSON if log_format is LogFormat.json else kopf.LogFormat.FULL,
        log_prefix=log_format is LogFormat.plain,  # JSON has the `object` field instead
    )
    if not verbose:
        # kopf logs handler outcomes on "kopf.objects" (through a per-object adapter).
        objects = logging.getLogger("kopf.objects")
        if not any(isinstance(f, WithoutTimerSuccess) for f in objects.filters):
            objects.addFilter(WithoutTimerSuccess())
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, ObjectReferenceFilter) for f in handler.filters):
            handler.addFilter(ObjectReferenceFilter())
