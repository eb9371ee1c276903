"""Only files this user alone could have written are trusted; planted names are never written through."""

import asyncio
import json
import logging
import os
import stat
import time

import pytest

from dask_runners import ConfigurationError, SchedulerFileError
from dask_runners.job import JobContext
from dask_runners.transport.owned_files import MAX_BYTES, directory_problem, write_privately
from dask_runners.transport.scheduler_file import (
    SchedulerFileReader,
    look_once,
    scheduler_file_path,
    write_scheduler_file,
)

STAMP = {"job_id": "42", "step_id": "1", "restart_count": 0}
NOBODY = 65534
CREDENTIALS = {"certificate": "-----BEGIN CERTIFICATE-----", "key": "-----BEGIN PRIVATE KEY-----"}


def ours(path, content, mode=0o600):
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    path.chmod(mode)
    return path


def stamped(**extra):
    return {"type": "Scheduler", "address": "tls://10.0.0.1:1", **extra, "dask_runners": {"stamp": STAMP}}


def test_a_symbolic_link_is_not_followed(tmp_path):
    target = ours(tmp_path / "real.json", stamped())
    (tmp_path / "scheduler.json").symlink_to(target)
    state = look_once(tmp_path / "scheduler.json", STAMP)
    assert (state.kind, "a symbolic link" in state.error) == ("untrusted", True)


@pytest.mark.timeout(10)
def test_a_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "scheduler.json")
    start = time.monotonic()
    state = look_once(tmp_path / "scheduler.json", STAMP)
    assert time.monotonic() - start < 1
    assert state.kind == "untrusted" and "a FIFO" in state.error


def test_another_users_file_is_refused_and_named(tmp_path):
    path = ours(tmp_path / "scheduler.json", stamped(credentials=CREDENTIALS))
    os.chown(path, NOBODY, NOBODY)
    state = look_once(path, STAMP)
    assert state.kind == "untrusted"
    assert "owned by another user" in state.error and f"uid {NOBODY}" in state.error and "mode 0600" in state.error


@pytest.mark.parametrize("mode, why", [(0o620, "writable by group or others"), (0o602, "writable by group or others"),
                                        (0o640, "readable by group or others")])
def test_a_file_of_this_run_open_to_others_is_refused(tmp_path, mode, why):
    state = look_once(ours(tmp_path / "scheduler.json", stamped(), mode), STAMP)
    assert state.kind == "untrusted" and why in state.error and f"mode {mode:04o}" in state.error


def test_a_huge_file_is_refused_unread(tmp_path):
    path = ours(tmp_path / "scheduler.json", "x" * (MAX_BYTES + 1))
    state = look_once(path, STAMP)
    assert state.kind == "untrusted" and "larger than" in state.error


def test_under_tls_a_file_without_credentials_is_never_used(tmp_path):
    path = ours(tmp_path / "scheduler.json", stamped())
    assert look_once(path, STAMP).kind == "ready"
    state = look_once(path, STAMP, credentials_required=True)
    assert state.kind == "untrusted" and "no credentials" in state.error
    ours(path, stamped(credentials=CREDENTIALS))
    assert look_once(path, STAMP, credentials_required=True).contact.credentials.key == CREDENTIALS["key"]


@pytest.mark.parametrize("content", [stamped(address=7), stamped(credentials="key"),
                                     stamped(credentials={"certificate": 1, "key": 2})])
@pytest.mark.asyncio
@pytest.mark.timeout(10)
async def test_a_file_of_this_run_with_bad_contents_is_a_named_error_at_once(tmp_path, content):
    path = ours(tmp_path / "scheduler.json", content)
    assert look_once(path, STAMP).kind == "invalid"
    with pytest.raises(SchedulerFileError, match="bad contents"):
        await SchedulerFileReader(path, STAMP).wait()


@pytest.mark.asyncio
@pytest.mark.timeout(10)
async def test_the_reader_warns_once_about_a_planted_file_then_takes_the_real_one(tmp_path, caplog):
    path = ours(tmp_path / "scheduler.json", stamped(address="tls://attacker:1"))
    os.chown(path, NOBODY, NOBODY)
    reader = SchedulerFileReader(path, STAMP)
    with caplog.at_level(logging.WARNING, logger="dask_runners.transport.scheduler_file"):
        waiting = asyncio.ensure_future(reader.wait())
        await asyncio.sleep(0.5)
        assert not waiting.done()
        write_scheduler_file(path, "tls://10.0.0.1:8786", STAMP)
        contact = await asyncio.wait_for(waiting, 5)
    assert contact.address == "tls://10.0.0.1:8786"
    assert caplog.text.count("ignoring") == 1 and "owned by another user" in caplog.text
    assert reader.looks > 2


def test_writing_replaces_a_planted_link_and_never_writes_through_it(tmp_path):
    victim = tmp_path / "elsewhere.txt"
    victim.write_text("unrelated")
    path = tmp_path / "scheduler.json"
    path.symlink_to(victim)
    write_scheduler_file(path, "tls://10.0.0.1:8786", STAMP, extra={"credentials": CREDENTIALS})
    assert victim.read_text() == "unrelated"
    assert not path.is_symlink() and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert look_once(path, STAMP).contact.address == "tls://10.0.0.1:8786"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere.txt", "scheduler.json"]


def test_temporary_names_cannot_be_predicted(tmp_path, monkeypatch):
    names = []
    real_replace = os.replace

    def record(source, destination):
        names.append(os.path.basename(source))
        real_replace(source, destination)

    monkeypatch.setattr(os, "replace", record)
    for _ in range(3):
        write_privately(tmp_path / "scheduler.json", b"{}")
    assert len(set(names)) == 3 and not any(str(os.getpid()) in name for name in names)


def test_directory_problems_are_named(tmp_path):
    assert directory_problem(tmp_path, writable=True) is None
    assert "does not exist" in directory_problem(tmp_path / "missing", writable=False)
    (tmp_path / "file").write_text("")
    assert "is not a directory" in directory_problem(tmp_path / "file", writable=False)


def test_paths_expand_the_home_and_variables_and_refuse_unknown_placeholders(monkeypatch, tmp_path):
    job = JobContext("slurm", job_id="7", step_id="0", rank=0, world_size=3)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("SCRATCH_DIR", str(tmp_path / "scratch"))
    assert scheduler_file_path("~/s-{job_id}.json", job, {}) == tmp_path / "s-7.json"
    assert scheduler_file_path("$SCRATCH_DIR/s.{step_id}.json", job, {}) == tmp_path / "scratch" / "s.0.json"
    with pytest.raises(ConfigurationError, match=r"holds \{data\}; the placeholders it may hold are \{job_id\}, \{step_id\}"):
        scheduler_file_path("s-{data}.json", job, {})
    for template in ("s-{}.json", "a{b.json", "s-{job_id!x}.json", "s-{job_id:%}.json"):
        with pytest.raises(ConfigurationError, match="scheduler_file="):
            scheduler_file_path(template, job, {})


@pytest.mark.asyncio
async def test_only_a_file_this_launch_writes_needs_its_directory_now(tmp_path):
    from dask_runners.transport.scheduler_file import SchedulerFileTransport

    missing = tmp_path / "not-yet" / "scheduler.json"
    await SchedulerFileTransport(missing, None).prepare(False, False)  # a scheduler started elsewhere
    with pytest.raises(SchedulerFileError, match="does not exist"):
        await SchedulerFileTransport(missing, STAMP).prepare(False, True)


def test_connect_from_outside_refuses_a_file_someone_else_could_have_written(tmp_path):
    from dask_runners import ClusterNotFoundError, connect

    path = ours(tmp_path / "cluster.json", stamped(credentials=CREDENTIALS))
    os.chown(path, NOBODY, NOBODY)
    with pytest.raises(ClusterNotFoundError, match=r"owned by another user \(owner nobody \(uid 65534\)"):
        connect(path)
    with pytest.raises(ClusterNotFoundError, match="found no file there"):
        connect(tmp_path / "missing.json")
