"""Per-job TLS under a real srun: only the job's own processes get in."""

import json
import stat

import pytest

from dask_runners.security import JobCredentials

from ..launch import PYTHON, launch, need, slurm_is_up, write_script

pytestmark = [pytest.mark.timeout(180)]

INTRUDERS = """\
import asyncio, os, socket, stat, sys
from dask.distributed import Client, Worker
from dask_runners import SLURMRunner, JobCredentials, connect

def refused(what, attempt):
    try:
        attempt()
    except Exception as e:
        print(f"REFUSED {what}: {type(e).__name__}", flush=True)
    else:
        print(f"ACCEPTED {what}", flush=True)

def raw_peer(address):
    host, port = address.split("://")[1].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
        s.settimeout(5)
        if s.recv(100) == b"":
            raise ConnectionError("closed without a word")

async def foreign_worker(address):
    async with Worker(address, security=JobCredentials.generate().security(), name="intruder"):
        pass

with SLURMRunner() as runner:
    with Client(runner) as client:
        client.wait_for_workers(runner.n_workers)
        print("ADDRESS", runner.scheduler_address, flush=True)
        mode = stat.S_IMODE(os.stat(runner.scheduler_file).st_mode)
        print("MODE", oct(mode), flush=True)
        refused("client without credentials", lambda: Client(runner.scheduler_address, timeout=3).close())
        refused("raw tcp peer", lambda: raw_peer(runner.scheduler_address))
        refused("worker of another job", lambda: asyncio.run(asyncio.wait_for(foreign_worker(runner.scheduler_address), 10)))
        names = [w["name"] for w in client.scheduler_info(n_workers=-1)["workers"].values()]
        print("WORKERS", sorted(map(str, names)), flush=True)
        with connect(runner.scheduler_file, timeout=10) as outside:
            print("CONNECT", outside.submit(lambda x: x * 2, 21).result(), flush=True)
        assert client.submit(lambda x: x + 1, 10).result() == 11
        print("STILL SERVING", flush=True)
"""


@pytest.fixture
def slurm():
    need(slurm_is_up(), "a running Slurm (ci/start-slurm.sh)")


def test_only_the_jobs_own_processes_get_in(job_dir, slurm):
    result = launch(["srun", "-n", "4", PYTHON, write_script(job_dir, INTRUDERS)], job_dir)
    assert result.returncode == 0, result.report()
    assert "ADDRESS tls://" in result.stdout
    assert "MODE 0o600" in result.stdout
    assert "REFUSED client without credentials" in result.stdout, result.report()
    assert "REFUSED raw tcp peer" in result.stdout, result.report()
    assert "REFUSED worker of another job" in result.stdout, result.report()
    assert "ACCEPTED" not in result.stdout
    assert "WORKERS ['2', '3']" in result.stdout
    assert "CONNECT 42" in result.stdout
    assert "STILL SERVING" in result.stdout
    assert list(job_dir.glob("scheduler-*.json")) == []  # credentials gone with the file


def test_security_false_runs_plain_tcp_with_one_warning(job_dir, slurm):
    script = write_script(job_dir, """\
from dask.distributed import Client
from dask_runners import SLURMRunner
with SLURMRunner(security=False) as runner:
    with Client(runner) as client:
        client.wait_for_workers(runner.n_workers)
        print("ADDRESS", runner.scheduler_address, client.submit(lambda x: x + 1, 10).result(), flush=True)
""")
    result = launch(["srun", "-n", "4", PYTHON, script], job_dir)
    result.assert_clean_success()
    assert "ADDRESS tcp://" in result.stdout and " 11" in result.stdout
    assert result.stderr.count("TLS is off") == 1


def test_credentials_are_fresh_per_job_and_carry_no_secrets_elsewhere():
    first, second = JobCredentials.generate(), JobCredentials.generate()
    assert first.key != second.key and first.certificate != second.certificate
    assert "PRIVATE KEY" in first.key and "CERTIFICATE" in first.certificate
    assert JobCredentials.from_dict(json.loads(json.dumps(first.to_dict()))) == first
    assert first.security().require_encryption


def test_temporary_scheduler_file_is_owner_only_from_creation(tmp_path, monkeypatch):
    """The mode is set by open(), never by a later chmod: check it before the rename."""
    import os

    from dask_runners.transport.scheduler_file import write_scheduler_file

    modes = []
    real_replace = os.replace

    def replace_and_record(src, dst):
        modes.append(stat.S_IMODE(os.stat(src).st_mode))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_and_record)
    monkeypatch.setattr(os, "chmod", lambda *a, **k: pytest.fail("chmod used"))
    write_scheduler_file(tmp_path / "s.json", "tls://a:1", {"job_id": "1"}, extra={"credentials": {"key": "k"}})
    assert modes == [0o600]
