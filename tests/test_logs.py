"""Per-rank logging, the ready line and the dashboard's address: the parts without a launcher."""

import asyncio
import gc
import logging
import os
import subprocess
import sys
import time

import dask
import pytest

from dask_runners.dashboard import Dashboard, scheduler_dashboard_options, worker_dashboard_options
from dask_runners.logs import configure_rank_logging, parse_level, terminal_levels
from dask_runners.roles import Role
from dask_runners.services.client import ready_line, since_launch
from dask_runners.transport import Contact
from dask_runners.transport.owned_files import UntrustedFile, append_privately

NOBODY = 65534


@pytest.mark.parametrize("role, ours", [(Role.scheduler, logging.INFO), (Role.client, logging.INFO),
                                        (Role.worker, logging.WARNING)])
def test_auto_keeps_the_worker_ranks_and_distributed_quiet(role, ours):
    assert terminal_levels(role, "auto") == {"dask_runners": ours, "distributed": logging.WARNING,
                                             "asyncio": logging.WARNING, "tornado": logging.WARNING}


def test_a_level_name_sets_every_logger_of_every_rank():
    assert set(terminal_levels(Role.worker, "debug").values()) == {logging.DEBUG}


def test_a_distributed_level_the_user_chose_is_kept():
    with dask.config.set({"distributed.logging.distributed": "error"}):
        assert terminal_levels(Role.client, "auto")["distributed"] == logging.ERROR


def test_an_unknown_level_names_the_choices():
    with pytest.raises(ValueError, match="runners.logging.level is 'loud'; use auto, debug, info"):
        parse_level("loud")


@pytest.fixture
def restore_logging():
    names = ("dask_runners", "distributed", "asyncio", "tornado")
    saved = {n: (logging.getLogger(n).level, list(logging.getLogger(n).handlers), logging.getLogger(n).propagate,
                 [(h, h.level, h.formatter) for h in logging.getLogger(n).handlers]) for n in names}
    yield
    for name, (level, handlers, propagate, states) in saved.items():
        named = logging.getLogger(name)
        named.setLevel(level)
        named.handlers[:] = handlers
        named.propagate = propagate
        for handler, handler_level, formatter in states:
            handler.setLevel(handler_level)
            handler.setFormatter(formatter)


def test_a_rank_writes_its_full_log_to_its_own_private_file(tmp_path, restore_logging):
    path = configure_rank_logging(Role.worker, 7, level="auto", directory=tmp_path / "logs")
    assert path == tmp_path / "logs" / "rank-7.log"
    logging.getLogger("distributed.worker").info("an INFO line the terminal does not show")
    logging.getLogger("dask_runners.x").warning("a warning")
    text = path.read_text()
    assert " - rank 7 - distributed.worker - INFO - an INFO line the terminal does not show" in text
    assert " - rank 7 - dask_runners.x - WARNING - a warning" in text
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "logs").stat().st_mode & 0o777) == "0o700"


def test_an_error_inside_the_event_loop_says_its_rank(restore_logging, capfd):
    """asyncio's own messages (here the one a lost future's error gives) carry the rank like every line."""
    configure_rank_logging(Role.client, 5, level="auto", directory=None)

    async def lose_an_error():
        asyncio.get_running_loop().create_future().set_exception(TimeoutError("Timeout"))

    asyncio.run(lose_an_error())
    gc.collect()
    lines = capfd.readouterr().err.splitlines()
    assert [line.split(" - ", 1)[1] for line in lines if " - " in line] == [
        "rank 5 - asyncio - ERROR - Future exception was never retrieved"
    ], lines


def test_a_planted_log_file_is_refused_and_the_rank_logs_to_the_terminal(tmp_path, restore_logging, caplog):
    (tmp_path / "rank-3.log").symlink_to(tmp_path / "elsewhere")
    with caplog.at_level(logging.WARNING, logger="dask_runners.logs"):
        assert configure_rank_logging(Role.worker, 3, level="auto", directory=tmp_path) is None
    assert not (tmp_path / "elsewhere").exists()
    assert "cannot write its log to" in caplog.text and "a symbolic link" in caplog.text


@pytest.mark.timeout(10)
def test_appending_refuses_a_fifo_without_blocking_and_another_users_file(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    start = time.monotonic()
    with pytest.raises(UntrustedFile, match="a FIFO"):
        append_privately(tmp_path / "fifo")
    assert time.monotonic() - start < 1
    theirs = tmp_path / "theirs.log"
    theirs.write_text("")
    os.chown(theirs, NOBODY, NOBODY)
    with pytest.raises(UntrustedFile, match="owned by another user"):
        append_privately(theirs)


def test_the_ready_line_says_what_the_cluster_is_and_how_to_reach_its_dashboard():
    summary = {"workers": 14, "threads": 28, "memory": 14 * 2**30, "nodes": 2}
    assert ready_line(summary, 3.24, Dashboard("node1", "127.0.0.1", 8787)) == (
        "cluster ready in 3.2 s: 14 workers, 28 threads, 14.00 GiB on 2 nodes; "
        "dashboard http://localhost:8787/status after `ssh -L 8787:localhost:8787 node1`"
    )
    summary.update(workers=1, nodes=1)
    assert ready_line(summary, 1, Dashboard("node1", "0.0.0.0", 8787)).endswith("1 worker, 28 threads, 14.00 GiB on 1 node; dashboard http://node1:8787/status")


def test_the_ready_line_counts_from_the_process_start_to_the_clock_tick():
    """The start-up time in the ready line is the process's own, not off by up to a second."""
    code = "import time; time.sleep(0.3); from dask_runners.services.client import since_launch; print(since_launch())"
    before = time.monotonic()
    reported = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    elapsed = time.monotonic() - before
    # the child slept 0.3 s and cannot have lived longer than the parent watched it (plus a tick, 10 ms)
    assert 0.3 <= reported <= elapsed + 0.011, (reported, elapsed)
    assert 0 <= since_launch()


def test_the_dashboard_listens_on_loopback_unless_asked_otherwise():
    assert scheduler_dashboard_options({})["dashboard_address"] in ("127.0.0.1:8787", "127.0.0.1:0")
    assert scheduler_dashboard_options({"dashboard_address": ":9999"}) == {"dashboard_address": ":9999"}
    assert scheduler_dashboard_options({"dashboard": False})["dashboard_address"] == "127.0.0.1:0"
    assert worker_dashboard_options({})["dashboard_address"] == "127.0.0.1:0"
    with dask.config.set({"runners.dashboard.public": True}):
        assert scheduler_dashboard_options({})["dashboard_address"] in (":8787", ":0")
        assert "dashboard_address" not in worker_dashboard_options({})


def test_the_contact_carries_the_dashboard_and_ignores_a_malformed_one():
    contact = Contact("tls://10.0.0.1:1", dashboard=Dashboard("node1", "127.0.0.1", 8787))
    assert Contact.from_dict(contact.to_dict()) == contact
    assert Contact.from_dict({"address": "tls://10.0.0.1:1", "dashboard": {"port": "x"}}).dashboard is None
