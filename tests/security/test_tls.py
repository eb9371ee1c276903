"""Per-job TLS under a real srun: only the job's own processes get in."""

import json
import re
import stat
from pathlib import Path

import pytest

from dask_runners.security import JobCredentials

from ..launch import PYTHON, launch, write_script

pytestmark = [pytest.mark.timeout(180)]

INTRUDERS = """\
import asyncio, json, os, socket, ssl, stat, sys, tempfile
from dask.distributed import Client, Worker
from dask_runners import SLURMRunner, JobCredentials, connect

def pem_files(credentials):
    directory = tempfile.mkdtemp()
    paths = [os.path.join(directory, name) for name in ("cert.pem", "key.pem")]
    for path, text in zip(paths, (credentials.certificate, credentials.key)):
        with open(path, "w") as f:
            f.write(text)
    return paths

def handshake(address, chain=None):
    # A client that accepts any server certificate (no verification, no host name check), so
    # that a refusal can only be the listener's: an alert it sends when it checks our certificate.
    # Under TLS 1.3 that verdict comes after the client's side of the handshake, at the first read.
    host, port = address.split("://")[1].rsplit(":", 1)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if chain:
        context.load_cert_chain(*chain)
    try:
        with socket.create_connection((host, int(port)), timeout=5) as raw:
            with context.wrap_socket(raw) as tls:
                tls.settimeout(0.3)
                try:
                    return "CLOSED" if tls.recv(1) == b"" else "OPEN"
                except (socket.timeout, TimeoutError):
                    return "OPEN"  # accepted: the listener waits for our first message
    except ssl.SSLError as e:
        return f"ALERT {e.reason}"

def raw_peer(address):
    host, port = address.split("://")[1].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
        s.settimeout(5)
        try:
            return "CLOSED" if s.recv(100) == b"" else "ANSWERED"
        except ConnectionResetError:
            return "CLOSED"

async def foreign_worker(address, security):
    async with Worker(address, security=security, name="intruder"):
        pass

with SLURMRunner() as runner:
    with Client(runner) as client:
        client.wait_for_workers(runner.n_workers)
        print("ADDRESS", runner.scheduler_address, flush=True)
        mode = stat.S_IMODE(os.stat(runner.scheduler_file).st_mode)
        print("MODE", oct(mode), flush=True)
        own = JobCredentials.from_dict(json.load(open(runner.scheduler_file))["credentials"])
        foreign = JobCredentials.generate()
        # the runner's control channel is a handler on the scheduler's own listener
        print("CONTROL ON THE SCHEDULER'S LISTENER",
              client.run_on_scheduler(lambda dask_scheduler: "dask_runners_control" in dask_scheduler.handlers), flush=True)
        listeners = {"scheduler": runner.scheduler_address}
        for address, info in client.scheduler_info(n_workers=-1)["workers"].items():
            listeners[f"worker-{info['name']}"] = address
        for name, address in sorted(listeners.items()):
            for who, chain in [("no-certificate", None), ("foreign", pem_files(foreign)), ("own", pem_files(own))]:
                print("VERDICT", name, who, handshake(address, chain), flush=True)
            print("VERDICT", name, "raw-tcp", raw_peer(address), flush=True)
        try:
            asyncio.run(asyncio.wait_for(foreign_worker(runner.scheduler_address, foreign.security()), 10))
        except Exception as e:
            print("FOREIGN WORKER", type(e).__name__, flush=True)
        names = [w["name"] for w in client.scheduler_info(n_workers=-1)["workers"].values()]
        print("WORKERS", sorted(map(str, names)), flush=True)
        with connect(runner.scheduler_file, timeout=10) as outside:
            print("CONNECT", outside.submit(lambda x: x * 2, 21).result(), flush=True)
        assert client.submit(lambda x: x + 1, 10).result() == 11
        print("STILL SERVING", flush=True)
"""


def test_only_the_jobs_own_processes_get_in(job_dir, slurm):
    """Every listener of the job (the scheduler's, which also serves the control channel, and each
    worker's) refuses, in its own handshake, a client with no certificate or another job's."""
    result = launch(["srun", "-n", "4", PYTHON, write_script(job_dir, INTRUDERS)], job_dir)
    assert result.returncode == 0, result.report()
    assert "ADDRESS tls://" in result.stdout
    assert "MODE 0o600" in result.stdout
    assert "CONTROL ON THE SCHEDULER'S LISTENER True" in result.stdout, result.report()
    verdicts = dict(
        ((name, who), verdict)
        for name, who, verdict in re.findall(r"^VERDICT (\S+) (\S+) (.*)$", result.stdout, re.M)
    )
    assert {name for name, _ in verdicts} == {"scheduler", "worker-2", "worker-3"}, result.report()
    for name in ("scheduler", "worker-2", "worker-3"):
        # "ALERT": the reason OpenSSL gives for an alert received from the peer, i.e. the listener
        assert verdicts[name, "no-certificate"] == "ALERT TLSV13_ALERT_CERTIFICATE_REQUIRED", verdicts
        assert verdicts[name, "foreign"] in ("ALERT TLSV1_ALERT_UNKNOWN_CA", "ALERT SSLV3_ALERT_BAD_CERTIFICATE"), verdicts
        assert verdicts[name, "own"] == "OPEN", verdicts  # the same client with the job's certificate gets in
        assert verdicts[name, "raw-tcp"] == "CLOSED", verdicts
    assert "FOREIGN WORKER" in result.stdout, result.report()  # failed to join ...
    assert "WORKERS ['2', '3']" in result.stdout  # ... and is not among the workers
    assert "CONNECT 42" in result.stdout
    assert "STILL SERVING" in result.stdout
    assert result.leftovers == [], result.report()
    assert list(job_dir.glob("scheduler-*.json")) == []  # credentials gone with the file


@pytest.mark.parametrize(
    "options, env",
    [("security=False", {}), ("", {"DASK_RUNNERS__SECURITY": "False"})],
    ids=["argument", "dask config runners.security"],
)
def test_security_false_runs_plain_tcp_with_one_warning(job_dir, slurm, options, env):
    script = write_script(job_dir, f"""\
import json
from dask.distributed import Client
from dask_runners import SLURMRunner
with SLURMRunner({options}) as runner:
    with Client(runner) as client:
        client.wait_for_workers(runner.n_workers)
        workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
        print("ADDRESS", runner.scheduler_address, workers, client.submit(lambda x: x + 1, 10).result(), flush=True)
        print("CREDENTIALS", json.load(open(runner.scheduler_file)).get("credentials"), flush=True)
""")
    result = launch(["srun", "-n", "4", PYTHON, script], job_dir, env=env)
    result.assert_clean_success()
    # the scheduler (and so the control channel on its listener), the workers and the client: plain TCP
    assert re.search(r"^ADDRESS tcp://\S+ \['tcp://\S+', 'tcp://\S+'\] 11$", result.stdout, re.M), result.report()
    assert "CREDENTIALS None" in result.stdout, result.report()
    assert result.stderr.count("TLS is off") == 1


MPI_NO_FILE = """\
import os, sys

# Every file a rank opens for writing, from the interpreter's audit hook: a record, not a stand-in.
def audit(event, args):
    if event == "open" and isinstance(args[0], (str, bytes)):
        path, mode, flags = args
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        if writing:
            path = os.path.abspath(os.fsdecode(path))
            parent = os.stat(os.path.dirname(path)).st_mode & 0o777
            os.write(2, f"WROTE {path} {oct(parent)}\\n".encode())

sys.addaudithook(audit)

from dask.distributed import Client
from dask_runners import MPIRunner

with MPIRunner() as runner:
    with Client(runner) as client:
        client.wait_for_workers(runner.n_workers)
        print("ADDRESS", runner.scheduler_address, client.submit(lambda x: x + 1, 10).result(), flush=True)
"""


@pytest.mark.mpi
def test_mpi_runner_writes_the_credentials_to_no_file(job_dir, open_mpi):
    prefix, env = open_mpi
    tmp = job_dir / "tmp"
    tmp.mkdir()
    result = launch([*prefix, "4", PYTHON, write_script(job_dir, MPI_NO_FILE)], job_dir, env={**env, "TMPDIR": str(tmp)})
    assert result.returncode == 0 and result.tracebacks == 0, result.report()
    assert "ADDRESS tls://" in result.stdout and " 11" in result.stdout, result.report()
    written = re.findall(r"^WROTE (\S+) (0o\d+)$", result.stderr, re.M)
    assert written, result.report()  # the hook saw the ranks' files (worker directories, locks ...)
    for path, parent_mode in written:
        if path == "/dev/null" or path.startswith(str(tmp / "dask-scratch-space")):
            continue  # the workers' directories and locks: scanned for the key below
        # nothing anywhere else: no scheduler file, nothing in the job directory
        assert path.startswith(f"{tmp}/"), (path, result.report())
        # distributed.Security loads in-memory certificates through a private temporary directory
        # (mode 0700, and the directory itself), gone when the job is
        assert parent_mode == "0o700" or Path(path).parent == tmp, (path, parent_mode)
        assert not Path(path).exists(), path
    # nothing the job left holds the key
    for path in job_dir.rglob("*"):
        if path.is_file():
            assert "PRIVATE KEY" not in path.read_text(errors="replace"), path
    assert list(job_dir.glob("scheduler*.json")) == []
    assert result.leftovers == [], result.report()


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
