"""What dask_runners needs of distributed and tornado beyond their public API.

These are the reasons for setup.cfg's bounds on distributed. ci/test.sh runs
this module at both ends of the range (the newest release in the main
environment, the lower bounds in the oldest one), so a release that drops or
changes one of these fails here, by name, rather than as a slower or broken
cluster.
"""

import asyncio
import ssl

import pytest
import tornado.netutil
from distributed import Client, Scheduler, Worker

from dask_runners.security import JobCredentials
from dask_runners.services.client import wait_for_workers
from dask_runners.services.departures import stop_senders_of_closed_clients

pytestmark = pytest.mark.timeout(60)


def test_each_tls_context_is_built_once_through_distributeds_private_hook():
    """``JobSecurity`` overrides ``Security._get_tls_context``: were it renamed, every
    connection would build its context again, silently."""
    credentials = JobCredentials.generate()
    client = credentials.security().get_connection_args("client")["ssl_context"]
    assert credentials.security().get_connection_args("client")["ssl_context"] is client
    server = credentials.security().get_listen_args("scheduler")["ssl_context"]
    assert server is credentials.security().get_listen_args("scheduler")["ssl_context"]
    assert server.num_tickets == 0  # set by our override on server contexts only


def test_tornados_client_context_can_be_built_ahead_of_the_first_tls_accept():
    """``prepare_to_accept_tls`` calls tornado's private ``_client_ssl_defaults`` in a
    thread: useful only while tornado builds that context once and keeps it."""
    defaults = getattr(tornado.netutil, "_client_ssl_defaults", None)
    if callable(defaults):
        assert defaults() is defaults()
    else:  # older tornado builds it at import: nothing to prepare
        assert isinstance(defaults, ssl.SSLContext)


@pytest.mark.asyncio
async def test_waiting_for_the_workers_of_a_scheduler_the_runner_did_not_start():
    """The poll asks ``Scheduler.identity(n_workers=-1)``, which distributed takes
    from 2025.4.0 on: setup.cfg's lower bound (2025.3.0 answers with a TypeError)."""
    async with Scheduler(host="127.0.0.1", dashboard=False) as scheduler:
        async with Worker(scheduler.address, name="w1", nthreads=1):
            await wait_for_workers(scheduler.address, {}, 1, timeout=30, ours=False)


@pytest.mark.asyncio
async def test_the_batched_senders_of_closed_clients_stop_and_leave_no_timer():
    """``stop_senders_of_closed_clients`` reads ``Client._instances``, ``Client.scheduler_comm``
    and the ``BatchedSend``'s ``please_stop``, ``abort()`` and ``stopped``. ``Client.close`` leaves
    the sender running when the scheduler's end closed first; a timer it leaves pending as the
    loop stops can end as "Future exception was never retrieved" at exit."""
    async with Scheduler(host="127.0.0.1", dashboard=False) as scheduler:
        async with Client(scheduler.address, asynchronous=True) as client:
            pass  # its goodbye travels on the batched stream
        sender = client.scheduler_comm
        await stop_senders_of_closed_clients()
        assert sender.please_stop and sender.stopped.is_set()
        loop = asyncio.get_running_loop()
        pending = [h for h in loop._scheduled if not h.cancelled() and "with_timeout" in repr(h._args)]
        assert pending == []
