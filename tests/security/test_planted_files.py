"""Another user plants files in a job directory writable by everyone: real srun jobs.

The attacker is ``nobody`` (``setpriv --reuid=65534``), with the system's
Python and nothing of ours. Inside an ``salloc`` it knows the job id, as
``squeue`` would tell it, and so the stamp a scheduler file of the job's
first step carries. The job must run normally with the planted files
ignored, never connect to the attacker, and never write through a planted
name.
"""

import shutil
import socket
import tempfile
import threading
from pathlib import Path

import pytest

from ..faults import scripts
from ..launch import PYTHON, launch, need, slurm_is_up

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(180)]

ATTACKER = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3"]

PLANT = """\
import json, os, sys
job_id, what, port = sys.argv[1], sys.argv[2], sys.argv[3]
path = f"scheduler-{job_id}.0.json"
stamp = {"launcher": "slurm", "job_id": job_id, "step_id": "0", "restart_count": 0}
if what in ("forged", "forged-plain"):
    fake = {"certificate": "-----BEGIN CERTIFICATE-----", "key": "-----BEGIN PRIVATE KEY-----"}
    content = {"type": "Scheduler", "address": f"tls://127.0.0.1:{port}", "credentials": fake,
               "dask_runners": {"stamp": stamp}}
    if what == "forged-plain":  # no credentials: would push the job onto plain TCP
        content.update(address=f"tcp://127.0.0.1:{port}", credentials=None)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, json.dumps(content).encode())
    os.close(fd)
elif what == "fifo":
    os.mkfifo(path, 0o666)
elif what == "links":
    # the temporary names the old writer used (".<name>.<pid>.tmp") for the next
    # 5000 process ids, each a link to a file of the attacker's
    last = int(open("/proc/sys/kernel/ns_last_pid").read())
    for pid in range(last + 1, last + 5000):
        os.symlink("victim.txt", f".{path}.{pid}.tmp")
    with open("victim.txt", "w") as f:
        f.write("the attacker's file")
    os.chmod("victim.txt", 0o666)
print("PLANTED", what, flush=True)
"""


@pytest.fixture(autouse=True)
def slurm():
    need(slurm_is_up(), "a running Slurm (ci/start-slurm.sh)")
    need(shutil.which("setpriv") is not None and Path("/usr/bin/python3").exists(), "setpriv and /usr/bin/python3")


@pytest.fixture
def shared_dir():
    """A job directory every user can write to, outside the test's private tmp."""
    directory = Path(tempfile.mkdtemp(prefix="dask-runners-shared-", dir="/tmp"))
    directory.chmod(0o777)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def attackers_listener():
    """A port the forged file points at; counts every connection made to it."""
    server = socket.create_server(("127.0.0.1", 0))
    connections = []

    def accept():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            connections.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1], connections
    server.close()


def run_with_plant(directory: Path, what: str, port: int = 0):
    (directory / "plant.py").write_text(PLANT)
    (directory / "plant.py").chmod(0o644)
    job = scripts.write(directory, scripts.STANDARD, "SLURMRunner")
    steps = (
        f"{' '.join(ATTACKER)} plant.py $SLURM_JOB_ID {what} {port} && "
        f"srun -n 4 {PYTHON} {job.name}; echo STEP_RC=$?"
    )
    return launch(["salloc", "-n", "4", "bash", "-c", steps], directory)


@pytest.mark.parametrize("forgery", ["forged", "forged-plain"], ids=["with credentials", "without"])
def test_a_forged_scheduler_file_is_ignored_and_never_contacted(shared_dir, attackers_listener, forgery):
    port, connections = attackers_listener
    result = run_with_plant(shared_dir, forgery, port)
    assert f"PLANTED {forgery}" in result.stdout, result.report()
    assert "STEP_RC=0" in result.stdout and "RESULT OK" in result.stdout, result.report()
    assert connections == [], "a rank connected to the attacker's address"
    # the scheduler's file replaced the forged one, so a rank may see it or not
    for line in result.stderr.splitlines():
        if "ignoring" in line:
            assert "owned by another user" in line and "nobody (uid 65534)" in line, line
    assert "Traceback" not in result.stderr, result.report()
    assert sorted(p.name for p in shared_dir.glob("scheduler-*.json")) == []


@pytest.mark.timeout(120)
def test_a_fifo_at_the_scheduler_files_path_blocks_no_rank(shared_dir):
    result = run_with_plant(shared_dir, "fifo")
    assert "PLANTED fifo" in result.stdout, result.report()
    assert "STEP_RC=0" in result.stdout and "RESULT OK" in result.stdout, result.report()
    assert result.seconds < 30, result.report()
    for line in result.stderr.splitlines():
        if "ignoring" in line:
            assert "a FIFO" in line, line
    # the scheduler rank's one warning about a directory others can write to (security.rst)
    assert result.stderr.count("is writable by group or others") == 1, result.report()
    assert "other users can plant files there" in result.stderr, result.report()
    assert sorted(p.name for p in shared_dir.glob("scheduler-*.json")) == []


def test_planted_links_at_temporary_names_are_never_written_through(shared_dir):
    result = run_with_plant(shared_dir, "links")
    assert "PLANTED links" in result.stdout, result.report()
    assert "STEP_RC=0" in result.stdout and "RESULT OK" in result.stdout, result.report()
    assert (shared_dir / "victim.txt").read_text() == "the attacker's file"
    ours = [p for p in shared_dir.iterdir() if not p.is_symlink() and p.name not in ("plant.py", "job.py", "victim.txt")]
    assert ours == [], ours  # no scheduler file, no temporary file left behind
