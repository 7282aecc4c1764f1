"""The one polling loop (infinitecontext/devtools/waiting.py) the dev cluster and the tests use."""

from __future__ import annotations

import itertools

import pytest

from infinitecontext.devtools.waiting import wait_for


def test_returns_the_first_truthy_value() -> None:
    answers = iter([None, 0, "", "ready"])
    assert wait_for("a value", lambda: next(answers), timeout_s=5, every_s=0.001) == "ready"


def test_errors_it_is_told_to_ride_out_count_as_not_yet() -> None:
    calls = itertools.count()

    def flaky() -> int:
        if next(calls) < 3:
            raise ConnectionError("restarting")
        return 7

    assert wait_for("a restart", flaky, timeout_s=5, every_s=0.001, retry_on=(OSError,)) == 7


def test_any_other_error_ends_the_wait_at_once() -> None:
    def broken() -> bool:
        raise ValueError("a bug, not a wait")

    with pytest.raises(ValueError, match="a bug"):
        wait_for("nothing", broken, timeout_s=60, retry_on=(OSError,))


def test_the_timeout_names_what_how_long_the_last_answer_and_the_context() -> None:
    with pytest.raises(TimeoutError) as timed_out:
        wait_for(
            "the job to finish",
            lambda: [],  # no finished jobs yet
            timeout_s=0.05,
            every_s=0.01,
            on_timeout=lambda: "the job's log: still running",
        )
    message = str(timed_out.value)
    assert message.startswith("timed out after 0.05 s waiting for the job to finish; last: []")
    assert message.endswith("the job's log: still running")


def test_the_last_error_is_in_the_timeout_message() -> None:
    def refused() -> bool:
        raise ConnectionRefusedError("port 6820")

    with pytest.raises(TimeoutError, match=r"ConnectionRefusedError.*port 6820"):
        wait_for("slurmrestd", refused, timeout_s=0.05, every_s=0.01, retry_on=(OSError,))
