"""The client rank's failure reaches the client code exactly once, however late it comes."""

import pytest

from dask_runners.exceptions import SchedulerLostError
from distributed.core import Status
from dask_runners.state import RankState


def lost_state() -> RankState:
    state = RankState(rank=1)
    state.status = Status.running
    state.failure = SchedulerLostError("lost the connection to the scheduler")
    return state


class FutureCancelled(Exception):
    """Stands for distributed's FutureCancelledError, which the code may meet first."""


def test_code_that_ended_cleanly_meets_the_failure_it_never_saw():
    state = lost_state()
    with pytest.raises(SchedulerLostError):
        state.raise_failure_unseen_by(None)
    assert state.failure_raised and state.status is Status.closing
    state.raise_failure_unseen_by(None)  # once only


def test_code_that_ended_with_a_cancelled_future_meets_the_failure_from_it():
    state = lost_state()
    state.failure_raised = True  # the handler ran inside clean-up code that swallowed it
    cancelled = FutureCancelled("cancelled for reason: scheduler-connection-lost")
    with pytest.raises(SchedulerLostError) as raised:
        state.raise_failure_unseen_by(cancelled)
    assert raised.value.__cause__ is cancelled


def test_code_that_met_the_failure_is_not_told_again():
    state = lost_state()
    state.raise_failure_unseen_by(state.failure)
    try:
        try:
            raise state.failure
        except SchedulerLostError:
            raise RuntimeError("the code's own handling failed")
    except RuntimeError as while_handling:
        state.raise_failure_unseen_by(while_handling)


def test_no_failure_leaves_the_code_error_alone():
    state = RankState(rank=1)
    state.raise_failure_unseen_by(None)
    state.raise_failure_unseen_by(ValueError("the code's own"))
