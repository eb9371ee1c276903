"""The client rank's failure reaches the client code exactly once, however late it comes."""

import asyncio
import signal

import pytest
from distributed.core import Status

from dask_runners.control import StopOrder
from dask_runners.exceptions import ClusterStoppedError, JobInterrupted, SchedulerLostError
from dask_runners.roles import Role
from dask_runners.services.client import ClientSession
from dask_runners.signals import SignalPolicy
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


# -- a signal and a stopped cluster: one of them interrupts the client code, once ----------


def running_client() -> RankState:
    state = RankState(rank=1)
    state.role, state.status = Role.client, Status.running
    return state


def stopped_by_the_scheduler() -> asyncio.Future:
    loop = asyncio.new_event_loop()
    stopped = loop.create_future()
    loop.close()
    stopped.set_result(StopOrder(143, "the scheduler rank received a signal"))
    return stopped


# The handler and the loop thread decide under RankState.interrupting, so these two orders are
# the only outcomes; before, the loop thread could look between the handler's check and its note
# (a script without `with` then printed the cluster's error as it exited).


def test_a_signal_first_leaves_the_stopped_cluster_nothing_to_raise():
    state, woken = running_client(), []
    policy = SignalPolicy(state, preemption_signal=None)
    with pytest.raises(JobInterrupted):
        policy.handle(signal.SIGTERM, None)
    ClientSession(state, None, 1.0, lambda: woken.append(True) or True)._on_cluster_stopped(stopped_by_the_scheduler())
    assert state.failure is None and woken == []  # no second error, no SIGINT during the unwinding


def test_a_stopped_cluster_first_is_what_the_signal_raises():
    state, woken = running_client(), []
    ClientSession(state, None, 1.0, lambda: woken.append(True) or True)._on_cluster_stopped(stopped_by_the_scheduler())
    assert isinstance(state.failure, ClusterStoppedError) and woken == [True]
    with pytest.raises(ClusterStoppedError):
        SignalPolicy(state, preemption_signal=None).handle(signal.SIGINT, None)  # the wake-up itself
    assert state.signal_received is None
