"""A map killed three ways resumes, and its output holds every result exactly once."""

import json
import math
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest

from ..launch import PYTHON, launch, need, slurm_is_up, write_script

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(300)]

ITEMS = 4000
SCRIPT = """\
import os, sys, time
from dask.distributed import Client
from dask_runners import SLURMRunner, parallel_for

def work(i):
    time.sleep(0.002)
    return 2 * i

with SLURMRunner() as runner:
    with Client(runner) as client:
        client.wait_for_workers(runner.n_workers)
        loop = parallel_for(work, range({items}), client=client, output_dir=sys.argv[1], shard_size=500,
                            ordered=False)
        print("SKIPPED", loop.skipped, "RESTART", os.environ.get("SLURM_RESTART_COUNT", "0"), flush=True)
        for count, _ in enumerate(loop, 1):
            if count == 600:
                print("HALFWAY", os.getpid(), flush=True)
        print("FINISHED", loop.skipped, count, flush=True)
""".format(items=ITEMS)


@pytest.fixture(autouse=True)
def _slurm():
    need(slurm_is_up(), "a running Slurm (ci/start-slurm.sh)")


def whole_lines(output):
    """The indices of every line in the output directory; every line must be whole once the map is done."""
    indices = []
    for path in sorted(output.glob("shard-*")):
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # a finished shard's .partial file, renamed since the glob
            continue
        for line in data.splitlines(keepends=True):
            if line.endswith(b"\n"):
                indices.append(json.loads(line)["index"])
    return indices


def skipped_in(stdout):
    return [int(n) for n in re.findall(r"^SKIPPED (\d+)", stdout, re.MULTILINE)]


def run(job_dir, script, output, **kwargs):
    return launch(["srun", "-n", "4", PYTHON, str(script), str(output)], job_dir, **kwargs)


def test_sigterm_sigkill_of_the_client_and_scontrol_requeue_all_resume_exactly_once(job_dir):
    script = write_script(job_dir, SCRIPT)
    output = job_dir / "out"

    # 1. SIGTERM to the job, as scancel and the time limit send it.
    first = run(job_dir, script, output, when="HALFWAY", send=[signal.SIGTERM])
    assert first.returncode != 0 and "FINISHED" not in first.stdout, first.report()
    assert first.leftovers == [], first.report()
    kept = len(whole_lines(output))
    assert 600 <= kept < ITEMS

    # 2. SIGKILL of the client rank alone: it writes nothing more, not even the line in hand.
    def kill_client(line):
        os.kill(int(line.split()[1]), signal.SIGKILL)

    second = run(job_dir, script, output, when="HALFWAY", send=[kill_client])
    assert second.returncode != 0 and "FINISHED" not in second.stdout, second.report()
    assert skipped_in(second.stdout) == [kept], second.report()
    kept = len(set(whole_lines(output)))
    assert len(whole_lines(output)) == kept  # no item twice, even after a kill mid-line

    # 3. scontrol requeue of a batch job: Slurm starts it again, and it resumes.
    log = job_dir / "batch.out"
    submitted = subprocess.run(
        ["sbatch", "--parsable", "--requeue", "--open-mode=append", "-o", str(log), "-n", "4",
         "--wrap", f"srun -n 4 {PYTHON} {script} {output}"],
        cwd=job_dir, capture_output=True, text=True, check=True,
    )
    job_id = submitted.stdout.strip().split(";")[0]
    try:
        wait_for(lambda: log.exists() and "HALFWAY" in log.read_text(), 60, "the batch job to get halfway")
        subprocess.run(["scontrol", "requeue", job_id], check=True, capture_output=True)
        # Slurm makes a requeued job eligible only two minutes later (measured: 121 s); start it now.
        wait_for(lambda: job_state(job_id) == "PENDING", 30, "the job to be requeued")
        # slurmd refuses a launch whose credential carries the same second as the revocation of the
        # instance before it ("Job credential revoked", and the job ends with exit 1): start it a
        # whole second later.
        time.sleep(math.ceil(time.time()) + 1 - time.time())
        subprocess.run(["scontrol", "update", f"jobid={job_id}", "StartTime=now"], check=True, capture_output=True)
        wait_for(lambda: "FINISHED" in log.read_text(), 120, "the requeued job to finish",
                 lambda: f"job {job_id} is {job_state(job_id)}; its output:\n{log.read_text()}")
        wait_for(lambda: job_state(job_id) == "COMPLETED", 30, "the job to complete")
    finally:
        subprocess.run(["scancel", job_id], capture_output=True)
    text = log.read_text()
    assert re.findall(r"^SKIPPED \d+ RESTART (\d)", text, re.MULTILINE) == ["0", "1"], text
    third_start, requeued_start = skipped_in(text)
    assert third_start == kept

    # Every item once, every line whole; the requeued run skipped exactly what was kept.
    indices = whole_lines(output)
    assert sorted(indices) == list(range(ITEMS))
    finished = re.search(r"^FINISHED (\d+) (\d+)", text, re.MULTILINE)
    assert int(finished.group(1)) == requeued_start and int(finished.group(2)) == ITEMS - requeued_start
    assert sorted(p.name for p in output.glob("shard-*")) == [f"shard-{k:05d}.jsonl" for k in range(8)]


def job_state(job_id):
    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
    match = re.search(r"JobState=(\w+)", out)
    return match.group(1) if match else None


def wait_for(condition, seconds, what, observed=lambda: ""):
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {seconds} s waiting for {what}; {observed()}")
        time.sleep(0.2)


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "resumable_inference.py"


def preempt_when(output, lines) -> threading.Thread:
    """Once ``output`` holds ``lines`` lines, send SIGUSR1 to srun, as Slurm's warning does."""

    def preempt():
        wait_for(lambda: len(whole_lines(output)) >= lines, 60, f"{lines} predictions")
        for process in psutil.process_iter(["cmdline"]):
            cmdline = process.info["cmdline"] or []
            if cmdline[:1] == ["srun"] and str(EXAMPLE) in cmdline and str(output) in cmdline:
                process.send_signal(signal.SIGUSR1)

    thread = threading.Thread(target=preempt, daemon=True)
    thread.start()
    return thread


def test_the_example_survives_two_preemptions_with_every_prediction_exactly_once(job_dir):
    output = job_dir / "predictions"
    argv = ["srun", "-n", "4", PYTHON, str(EXAMPLE), "--items", "20000", "--item-ms", "1", "--output", str(output)]
    kept = 0
    for stop_at in (4000, 10000):
        preempting = preempt_when(output, stop_at)
        preempted = launch(argv, job_dir, timeout=120)
        preempting.join()
        assert preempted.returncode == 75, preempted.report()
        assert preempted.tracebacks == 0 and "stopping for preemption" in preempted.stderr, preempted.report()
        assert "predicted" not in preempted.stdout  # it stopped before the end
        now = whole_lines(output)
        assert len(now) == len(set(now)) and kept < len(now) < 20000
        kept = len(now)
    final = launch(argv, job_dir, timeout=120)
    final.assert_clean_success()
    assert f"predicted {20000 - kept} items" in final.stdout and f"({kept} were already done)" in final.stdout
    assert sorted(whole_lines(output)) == list(range(20000))
    summary = subprocess.run([PYTHON, str(EXAMPLE), "--summary", str(output)], capture_output=True, text=True)
    assert json.loads(summary.stdout) == {"predictions": 20000, "distinct": 20000}


TERM_AS_PREEMPTION = """\
import signal, sys, time
from dask.distributed import Client
from dask_runners import SLURMRunner, parallel_for, stop_maps

def work(i):
    time.sleep(0.005)
    return i

with SLURMRunner(preemption_signal=signal.SIGTERM, on_preemption=stop_maps) as runner:
    with Client(runner) as client:
        client.wait_for_workers(runner.n_workers)
        loop = parallel_for(work, range(4000), output_dir=sys.argv[1], shard_size=500)
        print("SKIPPED", loop.skipped, flush=True)
        print("FINISHED", sum(1 for _ in loop), flush=True)
"""


def test_the_time_limits_sigterm_as_preemption_signal_lets_the_items_in_flight_finish(job_dir):
    script = write_script(job_dir, TERM_AS_PREEMPTION)
    output = job_dir / "out"
    name = f"term-{os.getpid()}"

    def time_limit(_line):  # as the time limit does: SIGTERM to every task, SIGKILL after KillWait
        wait_for(lambda: len(whole_lines(output)) >= 800, 60, "800 results")
        subprocess.run(["scancel", "-s", "TERM", "-n", name], check=True)

    argv = ["srun", "-J", name, "-n", "4", PYTHON, str(script), str(output)]
    stopped = launch(argv, job_dir, env={"DASK_RUNNERS__PARALLEL__GRACE": "3"}, when="SKIPPED", send=[time_limit])
    assert stopped.returncode == 75 and stopped.tracebacks == 0, stopped.report()
    assert "stopping for preemption; waiting up to 3 s" in stopped.stderr, stopped.report()
    kept = whole_lines(output)
    assert len(kept) == len(set(kept)) and 800 <= len(kept) < 4000
    resumed = launch(argv, job_dir)
    resumed.assert_clean_success()
    assert f"SKIPPED {len(kept)}" in resumed.stdout and f"FINISHED {4000 - len(kept)}" in resumed.stdout
    assert sorted(whole_lines(output)) == list(range(4000))
