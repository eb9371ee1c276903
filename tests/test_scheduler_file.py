import asyncio
import json
import os
import stat

import pytest

from dask_runners.transport import scheduler_file
from dask_runners.transport.scheduler_file import (
    SchedulerFileReader,
    look_once,
    remove_scheduler_file,
    write_scheduler_file,
)
from dask_runners.transport.watch import watch_directory

STAMP = {"job_id": "42", "step_id": "1", "restart_count": 0}
OLD_STEP = {"job_id": "42", "step_id": "0", "restart_count": 0}


def test_written_file_is_complete_owner_only_and_a_distributed_scheduler_file(tmp_path):
    path = tmp_path / "scheduler.json"
    write_scheduler_file(path, "tcp://10.0.0.1:8786", STAMP)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    content = json.loads(path.read_text())
    assert content["address"] == "tcp://10.0.0.1:8786"
    assert content["type"] == "Scheduler"
    assert look_once(path, STAMP).contact.address == "tcp://10.0.0.1:8786"
    assert [p.name for p in tmp_path.iterdir()] == ["scheduler.json"]


@pytest.mark.parametrize(
    "content, kind",
    [
        (None, "missing"),
        ("", "partial"),
        ('{"address": "tcp://1.2.3.4:1", "dask_runners": {"sta', "partial"),
        ('{"address": "tcp://1.2.3.4:1"}', "partial"),
        ("[1, 2]", "partial"),
        (json.dumps({"address": "tcp://1.2.3.4:1", "dask_runners": {"stamp": OLD_STEP}}), "stale"),
        (json.dumps({"address": "tcp://1.2.3.4:1", "dask_runners": {"stamp": STAMP}}), "ready"),
    ],
)
def test_look_once_classifies_what_it_finds(tmp_path, content, kind):
    path = tmp_path / "scheduler.json"
    if content is not None:
        _private(path, content)
    assert look_once(path, STAMP).kind == kind


@pytest.mark.asyncio
@pytest.mark.timeout(10)
async def test_reader_ignores_stale_and_partial_files_until_its_own_appears(tmp_path):
    path = tmp_path / "scheduler.json"
    write_scheduler_file(path, "tcp://dead:1", OLD_STEP)
    reader = SchedulerFileReader(path, STAMP)
    waiting = asyncio.ensure_future(reader.wait())
    await asyncio.sleep(0.2)
    assert not waiting.done()
    assert "stale file" in reader.describe()
    _private(path, '{"address": "tcp://half')
    await asyncio.sleep(0.2)
    assert not waiting.done()
    write_scheduler_file(path, "tcp://live:2", STAMP)
    assert (await asyncio.wait_for(waiting, 2)).address == "tcp://live:2"


@pytest.mark.asyncio
@pytest.mark.timeout(10)
async def test_reader_looks_quickly_then_settles(tmp_path):
    reader = SchedulerFileReader(tmp_path / "never.json", STAMP)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(reader.wait(), 2.0)
    # about 13 looks in the first second, then two per second
    assert 12 <= reader.looks <= 18
    assert "no file there" in reader.describe()


def test_remove_only_removes_our_own_file(tmp_path):
    path = tmp_path / "scheduler.json"
    write_scheduler_file(path, "tcp://a:1", OLD_STEP)
    remove_scheduler_file(path, STAMP)
    assert path.exists()
    write_scheduler_file(path, "tcp://a:1", STAMP)
    remove_scheduler_file(path, STAMP)
    assert not path.exists()
    remove_scheduler_file(path, STAMP)  # already gone: fine


def test_failed_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        write_scheduler_file(tmp_path / "scheduler.json", "tcp://a:1", STAMP)
    assert list(tmp_path.iterdir()) == []


def test_without_a_stamp_any_complete_scheduler_file_is_accepted(tmp_path):
    path = tmp_path / "scheduler.json"
    path.write_text(json.dumps({"type": "Scheduler", "address": "tcp://outside:8786"}))  # as distributed writes it: 0644
    assert look_once(path, None).contact.address == "tcp://outside:8786"
    assert look_once(path, STAMP).kind == "untrusted"  # a file of this run must be private
    path.chmod(0o600)
    assert look_once(path, STAMP).kind == "partial"  # and carry this run's stamp
    _private(path, '{"address": "tcp://out')
    assert look_once(path, None).kind == "partial"


@pytest.mark.asyncio
@pytest.mark.timeout(10)
async def test_a_scheduler_that_could_not_start_fails_the_readers_at_once(tmp_path):
    from dask_runners import SchedulerStartError

    path = tmp_path / "scheduler.json"
    write_scheduler_file(path, None, STAMP, extra={"error": "TypeError: bad option"})
    assert look_once(path, STAMP).kind == "failed"
    assert look_once(path, OLD_STEP).kind == "stale"  # another step's failure is not ours
    with pytest.raises(SchedulerStartError, match="could not start: TypeError: bad option"):
        await SchedulerFileReader(path, STAMP).wait()


@pytest.mark.asyncio
async def test_a_reader_on_the_scheduler_node_wakes_when_the_file_lands(tmp_path, monkeypatch):
    # With polling alone this reader would look again only after 30 s.
    monkeypatch.setattr(scheduler_file, "backoff_delays", lambda: iter(lambda: 30.0, None))
    reader, address = await _published_while_waiting(tmp_path)
    assert address == "tcp://10.0.0.1:8786"
    assert reader.looks == 2


@pytest.mark.asyncio
async def test_without_a_watch_the_reader_polls(tmp_path, monkeypatch):
    monkeypatch.setattr(scheduler_file, "watch_directory", lambda directory: None)
    _, address = await _published_while_waiting(tmp_path)
    assert address == "tcp://10.0.0.1:8786"


async def _published_while_waiting(tmp_path):
    """Publish a file 0.2 s after a reader began to wait; return the reader and what it read (5 s at most)."""
    path = tmp_path / "scheduler.json"
    reader = SchedulerFileReader(path, STAMP)
    waiting = asyncio.ensure_future(reader.wait())
    await asyncio.sleep(0.2)
    write_scheduler_file(path, "tcp://10.0.0.1:8786", STAMP)
    return reader, (await asyncio.wait_for(waiting, 5)).address


@pytest.mark.asyncio
async def test_watch_sleep_ends_early_on_a_rename_and_otherwise_runs_its_course(tmp_path):
    watch = watch_directory(tmp_path)
    assert watch is not None  # Linux, as on every machine the runners target
    try:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await watch.sleep(0.1)
        assert loop.time() - start >= 0.09
        loop.call_later(0.1, lambda: os.rename(_written(tmp_path / "x.tmp"), tmp_path / "x"))
        start = loop.time()
        await watch.sleep(30)
        assert loop.time() - start < 5
    finally:
        watch.close()


def test_no_watch_on_a_directory_that_does_not_exist(tmp_path):
    assert watch_directory(tmp_path / "missing") is None


def _written(path):
    path.write_text("x")
    return path


def _private(path, text):
    """Write ``text`` to ``path`` as the scheduler does: this user's, mode 0600."""
    path.write_text(text)
    path.chmod(0o600)


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_a_tls_clusters_file_sends_distributeds_client_to_connect_and_connect_works(tmp_path):
    from distributed import Client, Scheduler

    import dask_runners
    from dask_runners.exceptions import CredentialsRequiredError
    from dask_runners.security import JobCredentials
    from dask_runners.transport import Contact

    credentials = JobCredentials.generate()
    path = tmp_path / "scheduler.json"
    async with Scheduler(security=credentials.security(), protocol="tls", dashboard=False, host="127.0.0.1") as s:
        scheduler_file.publish_scheduler(path, Contact(s.address, credentials), s, STAMP)
        shown = json.loads(path.read_text())["address"]
        assert shown == "dask-runners-tls://" + s.address.removeprefix("tls://")
        assert look_once(path, STAMP).contact.address == s.address  # our readers see tls://
        started = asyncio.get_running_loop().time()
        with pytest.raises(CredentialsRequiredError, match=r"dask_runners\.connect\(scheduler_file\)"):
            await Client(scheduler_file=str(path), asynchronous=True, timeout=20)
        assert asyncio.get_running_loop().time() - started < 5  # at once, not after distributed's retries
        async with dask_runners.connect(path, asynchronous=True) as client:
            assert client.scheduler_info()["address"] == s.address


def test_a_cluster_without_tls_keeps_its_plain_address(tmp_path):
    from dask_runners.transport import Contact

    class FakeScheduler:
        id, services = "Scheduler-1", {}

    path = tmp_path / "scheduler.json"
    scheduler_file.publish_scheduler(path, Contact("tcp://10.0.0.1:8786"), FakeScheduler, STAMP)
    assert json.loads(path.read_text())["address"] == "tcp://10.0.0.1:8786"
