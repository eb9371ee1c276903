"""The leftover check of tests/launch.py finds what a command-line match would miss."""

import psutil

from ..launch import PYTHON, launch, write_script

ORPHAN = """\
import multiprocessing, os, time
if __name__ == "__main__":
    stdout = os.dup(1)
    for fd in (1, 2):  # the child's output goes nowhere, so that it does not hold the launch's pipes
        os.dup2(os.open(os.devnull, os.O_WRONLY), fd)
    child = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(30,))
    child.start()
    os.dup2(stdout, 1)
    print("CHILD", child.pid, flush=True)
    os._exit(0)  # no join: the spawned process outlives the launch, as a leaked Nanny worker would
"""


def test_a_spawned_process_that_outlives_the_launch_is_a_leftover(job_dir):
    """Its command line (``spawn_main(...) --multiprocessing-fork``) names neither the script nor the
    job directory; the launch's marker variable in its environment gives it away."""
    result = launch([PYTHON, write_script(job_dir, ORPHAN, "orphan.py")], job_dir, env={"PYTHONPATH": None})
    child = int(result.stdout.split("CHILD")[1].split()[0])
    assert any(line.startswith(f"{child}: ") and "spawn_main" in line for line in result.leftovers), result.report()
    assert str(job_dir) not in next(line for line in result.leftovers if line.startswith(f"{child}: "))
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE  # launch() ended it
