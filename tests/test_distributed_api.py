"""What dask_runners needs of distributed and tornado beyond their public API.

These are the reasons for setup.cfg's bounds on distributed. ci/test.sh runs
this module at both ends of the range (the newest release in the main
environment, the lower bounds in the oldest one), so a release that drops or
changes one of these fails here, by name, rather than as a slower or broken
cluster.
"""

import asyncio
import errno
import inspect
import ssl

import pytest
import tornado.iostream
import tornado.netutil
from distributed import Client, Scheduler, Worker

from dask_runners.security import JobCredentials
from dask_runners.services.client import wait_for_workers
from dask_runners.services.departures import stop_senders_of_closed_clients
from dask_runners.services.scheduler import cannot_listen

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


def test_tornados_streams_take_their_default_client_context_from_a_function_that_keeps_it():
    """``defer_certificate_store`` replaces tornado's private ``_client_ssl_defaults`` in
    ``tornado.iostream``, where ``SSLIOStream`` looks it up at each construction: useful only
    while tornado builds that context in this function, once, and keeps it."""
    defaults = tornado.netutil._client_ssl_defaults
    assert isinstance(defaults(), ssl.SSLContext) and defaults() is defaults()
    assert callable(tornado.iostream._client_ssl_defaults)
    assert "_client_ssl_defaults()" in inspect.getsource(tornado.iostream.SSLIOStream.__init__)


def test_distributed_keeps_the_package_versions_it_reports_for_the_process():
    """``MPIRunner`` computes ``get_versions()`` while MPI initializes (``mpi_init``): useful
    while the worker reports it at registration and the package versions, the costly part,
    are cached for the process."""
    from distributed import versions

    versions.get_versions()
    cached = versions._version_cached.cache_info().currsize
    assert cached >= len(versions.required_packages)
    assert "get_versions()" in inspect.getsource(Worker._register_with_scheduler)


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


@pytest.mark.asyncio
async def test_a_scheduler_that_cannot_listen_fails_with_the_os_error_as_its_cause(taken_port):
    """``SchedulerService`` tells a taken port (``cannot_listen``) by this cause."""
    port = taken_port
    with pytest.raises(RuntimeError) as failed:
        await Scheduler(host="127.0.0.1", port=port, dashboard_address=None)
    cause = failed.value.__cause__
    assert isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE
    said = cannot_listen("scheduler rank 0", {"host": "127.0.0.1", "port": port}, cause)
    assert said.startswith(f"scheduler rank 0: the scheduler cannot listen on 127.0.0.1:{port} (Address already in use);")
