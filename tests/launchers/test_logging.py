"""A log a person reads at 1 000 ranks: short by default, every line with its rank, the full log one option away."""

import os
import re
import stat

import pytest

from ..launch import PYTHON, launch, need, slurm_is_up, write_script

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(180)]

SCRIPT = """\
from dask.distributed import Client
from dask_runners import SLURMRunner

with SLURMRunner() as runner:
    with Client(runner) as client:
        client.wait_for_workers(runner.n_workers)
        assert sum(client.gather(client.map(abs, range(-50, 0)))) == 1275
"""
READY = re.compile(r"rank 1 - .* cluster ready in [\d.]+ s: 14 workers, (\d+) threads, [\d.]+ GiB on 1 node; "
                   r"dashboard http://localhost:\d+/status after `ssh -L \d+:localhost:\d+ \S+`")
RANKED = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} - rank (\d+) - ")


@pytest.fixture(autouse=True)
def _slurm():
    need(slurm_is_up(), "a running Slurm (ci/start-slurm.sh)")


def run_16(job_dir, **env):
    script = write_script(job_dir, SCRIPT)
    result = launch(["srun", "-n", "16", PYTHON, str(script)], job_dir, env={**os.environ, **env})
    result.assert_clean_success()
    return result


def test_a_successful_16_rank_run_prints_at_most_ten_lines_each_with_its_rank(job_dir):
    result = run_16(job_dir)
    lines = (result.stdout + result.stderr).splitlines()
    assert len(lines) <= 10, result.report()
    assert all(RANKED.match(line) for line in lines), result.report()
    assert sum(bool(READY.search(line)) for line in lines) == 1, result.report()


def test_the_full_log_goes_to_one_file_per_rank_while_the_terminal_stays_short(job_dir):
    logs = job_dir / "logs"
    result = run_16(job_dir, DASK_RUNNERS__LOGGING__DIRECTORY=str(logs))
    assert len((result.stdout + result.stderr).splitlines()) <= 10, result.report()
    files = sorted(logs.iterdir(), key=lambda path: int(path.stem.split("-")[1]))
    assert [path.name for path in files] == [f"rank-{rank}.log" for rank in range(16)]
    assert all(stat.S_IMODE(path.stat().st_mode) == 0o600 for path in files)
    assert "Scheduler at:" in files[0].read_text()
    for rank in range(2, 16):
        text = files[rank].read_text()
        assert "Start worker at:" in text and f" - rank {rank} - " in text, text


def test_one_config_key_brings_the_full_log_back_to_the_terminal(job_dir):
    result = run_16(job_dir, DASK_RUNNERS__LOGGING__LEVEL="info")
    ranks = {int(m.group(1)) for line in result.stderr.splitlines() if (m := RANKED.match(line))}
    assert ranks == set(range(16)), result.report()
    assert result.stderr.count("Start worker at:") == 14, result.report()


NANNY_SCRIPT = SCRIPT.replace("SLURMRunner()", 'SLURMRunner(worker_class="distributed.Nanny")')


def test_a_nannys_worker_process_logs_as_its_rank_does(job_dir):
    """The worker process a nanny spawns is new: it must get the rank's format, levels and file too."""
    logs = job_dir / "logs"
    script = write_script(job_dir, NANNY_SCRIPT)
    env = {**os.environ, "DASK_RUNNERS__LOGGING__DIRECTORY": str(logs)}
    result = launch(["srun", "-n", "4", PYTHON, str(script)], job_dir, env=env)
    result.assert_clean_success()
    lines = (result.stdout + result.stderr).splitlines()
    # the terminal: the ready line only, no worker process's INFO block, every line with its rank
    assert len(lines) <= 3 and all(RANKED.match(line) for line in lines), result.report()
    for rank in (2, 3):
        text = (logs / f"rank-{rank}.log").read_text()
        # the nanny's own lines and, once the worker process's plugins run, the worker's
        assert f" - rank {rank} - distributed.nanny - INFO - " in text, text
        assert f" - rank {rank} - distributed.worker - INFO -         Registered to:" in text, text
