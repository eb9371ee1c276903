"""tornado's default client context is deferred: a TLS server never loads the system's store for it,
and a connection of tornado's own still verifies against that store.

Each case runs in a fresh interpreter: tornado keeps the context it builds
for the life of the process, so an earlier test could have built it already.
"""

import os
import subprocess
import sys

import pytest
import tornado.iostream
import tornado.netutil

from dask_runners.deferred_store import DeferredStoreContext, defer_certificate_store
from dask_runners.security import JobCredentials

from ..launch import PYTHON, launch, write_script

pytestmark = pytest.mark.timeout(120)

SERVE = """\
import asyncio, sys, tornado.netutil
from distributed import Scheduler, Worker
from dask_runners.deferred_store import defer_certificate_store
from dask_runners.security import JobCredentials

async def main():
    if sys.argv[1] == "deferred":
        assert defer_certificate_store()
    security = JobCredentials.generate().security()
    async with Scheduler(host="127.0.0.1", dashboard=False, security=security) as scheduler:
        async with Worker(scheduler.address, security=security, nthreads=1):  # accepted by the scheduler
            pass
    print("built:", tornado.netutil._client_ssl_defaults.cache_info().currsize)

asyncio.run(main())
"""

CONNECT = """\
import asyncio, socket, ssl, threading
from tornado.iostream import IOStream
from dask_runners.deferred_store import defer_certificate_store

server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
server_context.load_cert_chain("cert.pem", "key.pem")
listener = socket.create_server(("127.0.0.1", 0))

def serve():
    connection, _ = listener.accept()
    try:
        with server_context.wrap_socket(connection, server_side=True):
            pass
    except (ssl.SSLError, OSError):
        pass

async def main():
    assert defer_certificate_store()
    threading.Thread(target=serve, daemon=True).start()
    stream = IOStream(socket.create_connection(listener.getsockname()))
    try:  # tornado's own client connection: no ssl_options, so tornado's default context
        await stream.start_tls(server_side=False, server_hostname="dask-runners")
        print("verified")
    except ssl.SSLCertVerificationError as e:
        print("refused:", e.verify_message)

asyncio.run(main())
"""


def run(script: str, *args: str, cwd=None, env=None) -> str:
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_tls_server_builds_tornados_default_client_context_unless_it_is_deferred():
    assert run(SERVE, "tornados") == "built: 1"  # tornado's SSLIOStream builds it for each accepted stream
    assert run(SERVE, "deferred") == "built: 0"


@pytest.mark.parametrize("trusted, expected", [(True, "verified"), (False, "refused: self")])
def test_a_connection_with_tornados_defaults_verifies_against_the_system_store(tmp_path, trusted, expected):
    """``SSL_CERT_FILE`` is the system's store as OpenSSL reads it: the server's certificate, or another one."""
    server = JobCredentials.generate()
    (tmp_path / "cert.pem").write_text(server.certificate)
    (tmp_path / "key.pem").write_text(server.key)
    (tmp_path / "store.pem").write_text(server.certificate if trusted else JobCredentials.generate().certificate)
    env = {**os.environ, "SSL_CERT_FILE": str(tmp_path / "store.pem"), "SSL_CERT_DIR": str(tmp_path)}
    assert run(CONNECT, cwd=tmp_path, env=env).startswith(expected)


def test_deferring_twice_keeps_the_first_context_and_another_replacement_is_left_alone(monkeypatch):
    original = tornado.netutil._client_ssl_defaults
    monkeypatch.setattr(tornado.iostream, "_client_ssl_defaults", original)
    assert defer_certificate_store()
    first = tornado.iostream._client_ssl_defaults()
    assert isinstance(first, DeferredStoreContext)
    assert defer_certificate_store() and tornado.iostream._client_ssl_defaults() is first

    def someone_elses():
        return original()

    monkeypatch.setattr(tornado.iostream, "_client_ssl_defaults", someone_elses)
    assert not defer_certificate_store()
    assert tornado.iostream._client_ssl_defaults is someone_elses


STORE_IN_RANKS = """\
import os, tornado.netutil
from dask.distributed import Client
from dask_runners import SLURMRunner

def store_built():
    return os.getpid(), tornado.netutil._client_ssl_defaults.cache_info().currsize

with SLURMRunner(worker_options={{"nthreads": 1}}, worker_class="{worker_class}") as runner:
    with Client(runner) as client:
        client.wait_for_workers(runner.n_workers)
        assert client.submit(lambda x: x + 1, 10).result() == 11  # fetched from a worker: it accepted
        workers = client.run(store_built)
        built = [b for _, b in workers.values()]
        if "{worker_class}" == "distributed.Nanny":  # the nannies: in the ranks' own processes
            built += [b for _, b in client.run(store_built, nanny=True).values()]
        print("PROCESSES", len({{p for p, _ in workers.values()}}), "BUILT", built,
              "SCHEDULER", client.run_on_scheduler(store_built)[1])
"""


@pytest.mark.parametrize("worker_class, built", [("distributed.Worker", [0, 0]), ("distributed.Nanny", [0, 0, 0, 0])])
def test_no_process_of_a_tls_job_loads_the_system_store(job_dir, slurm, worker_class, built):
    script = write_script(job_dir, STORE_IN_RANKS.format(worker_class=worker_class))
    result = launch(["srun", "-n", "4", PYTHON, script], job_dir)
    result.assert_clean_success()
    assert f"PROCESSES 2 BUILT {built} SCHEDULER 0" in result.stdout, result.report()
