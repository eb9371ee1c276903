"""parallel_for and worker environments: in this process, and on an in-process cluster."""

from __future__ import annotations

import functools
import io
import json
import logging
import pickle
import threading
import warnings

import pytest
from distributed import Client, LocalCluster

from dask_runners import (
    ConfigurationError,
    ItemFailure,
    ParallelForError,
    WorkerEnvironment,
    parallel_for,
    worker_environment,
)
from dask_runners.progress import Progress
from dask_runners.shards import ShardWriter, read_shards
from dask_runners.worker_setup import LARGE_PICKLE, build

from .launch import need_module, timing

pytestmark = pytest.mark.timeout(60)


def double(x, **env):
    return 2 * x


def scaled(x, *, scale):
    return scale * x


def fails_on_three(x, **env):
    if x == 3:
        raise ValueError(f"bad item {x}")
    return x


# -- in this process (no client) ------------------------------------------------------
def test_without_a_client_items_run_here_in_order():
    assert list(parallel_for(double, range(5))) == [0, 2, 4, 6, 8]


def test_setup_builds_the_environment_here_once():
    calls = []

    def setup():
        calls.append(1)
        return {"scale": 10}

    assert list(parallel_for(scaled, [1, 2, 3], setup=setup)) == [10, 20, 30]
    assert calls == [1]


def test_failures_raise_after_every_other_result():
    results = []
    with pytest.raises(ParallelForError, match="1 of 5 finished items failed.*item 3: ValueError: bad item 3") as info:
        for result in parallel_for(fails_on_three, range(5)):
            results.append(result)
    assert results == [0, 1, 2, 4]
    [failure] = info.value.failures
    assert (failure.index, failure.item) == (3, 3)
    assert "fails_on_three" in failure.traceback and "_call" not in failure.traceback
    assert isinstance(failure.exception, ValueError)


def test_on_error_return_puts_failures_in_place():
    results = list(parallel_for(fails_on_three, range(5), on_error="return"))
    assert results[:3] == [0, 1, 2] and results[4] == 4
    assert isinstance(results[3], ItemFailure) and results[3].error == "ValueError: bad item 3"


def test_on_error_skip_leaves_failures_out_but_keeps_them():
    loop = parallel_for(fails_on_three, range(5), on_error="skip", with_index=True)
    assert list(loop) == [(0, 0), (1, 1), (2, 2), (4, 4)]
    assert [failure.index for failure in loop.failures] == [3]
    assert loop.done == 5


def test_max_failures_stops_early():
    seen = []

    def items():
        for i in range(100):
            seen.append(i)
            yield i

    with pytest.raises(ParallelForError, match="stopping early"):
        list(parallel_for(lambda x: 1 / 0, items(), max_failures=2))
    assert len(seen) == 3


def test_environment_named_without_a_cluster_says_what_to_do():
    with pytest.raises(Exception, match="pass setup="):
        list(parallel_for(double, [1], environment="models"))


@pytest.mark.parametrize(
    "returned, message",
    [([1, 2], "returned list; it must return a dict"), ({"a-b": 1}, "must be valid Python names")],
)
def test_setup_must_return_a_dict_of_names(returned, message):
    with pytest.raises(TypeError, match=message):
        build(lambda: returned, "environment")


def test_a_setup_that_cannot_be_pickled_says_what_it_captures():
    lock = threading.Lock()

    def setup():
        return {"lock": lock}

    with pytest.raises(TypeError, match="cannot be sent to the workers.*it captures 'lock'"):
        pickle.dumps(WorkerEnvironment(setup))


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="on_error must be one of"):
        parallel_for(double, [1], on_error="ignore")
    with pytest.raises(ValueError, match="max_in_flight must be at least 1"):
        parallel_for(double, [1], max_in_flight=0)


def test_a_setup_that_captures_a_large_object_draws_a_warning():
    weights = bytes(LARGE_PICKLE + 10)

    def setup():
        return {"weights": weights}

    with pytest.warns(UserWarning, match=r"pickles to .*it captures 'weights'.*Build large objects inside"):
        WorkerEnvironment(setup)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        WorkerEnvironment(lambda: {"weights": bytes(LARGE_PICKLE + 10)})  # built on the worker: fine


# -- shards and progress ---------------------------------------------------------------
def test_shards_are_complete_ranges_renamed_into_place(tmp_path):
    loop = parallel_for(fails_on_three, range(7), on_error="skip", output_dir=tmp_path, shard_size=3)
    list(loop)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "manifest.json",
        "shard-00000.jsonl",
        "shard-00001.jsonl",
        "shard-00002.jsonl",
    ]
    assert len(loop.shards) == 3
    records = list(read_shards(tmp_path))
    assert [r["index"] for r in records] == list(range(7))
    assert records[3]["error"] == "ValueError: bad item 3" and "Traceback" in records[3]["traceback"]
    assert records[6] == {"index": 6, "result": 6}


def test_a_stopped_run_leaves_partial_shards(tmp_path):
    writer = ShardWriter(tmp_path, shard_size=10)
    writer.write(0, {"result": 1})
    writer.close(complete=False)
    assert [p.name for p in tmp_path.iterdir()] == ["shard-00000.jsonl.partial"]
    assert list(read_shards(tmp_path)) == []


def double(i):
    return 2 * i


def indices_on_disk(directory):
    """Every index with a line in ``directory``, finished shards and partial ones, each line whole."""
    indices = []
    for path in sorted(directory.glob("shard-*")):
        for line in path.read_text().splitlines(keepends=True):
            assert line.endswith("\n")
            indices.append(json.loads(line)["index"])
    return indices


def test_a_map_run_again_computes_only_what_has_no_result_and_says_so(tmp_path, caplog):
    first = parallel_for(double, range(25), output_dir=tmp_path, shard_size=10)
    assert [next(first) for _ in range(13)] == [2 * i for i in range(13)]
    first.close()  # stopped: shard 0 finished, shard 1 partial
    assert sorted(p.name for p in tmp_path.glob("shard-*")) == ["shard-00000.jsonl", "shard-00001.jsonl.partial"]
    with caplog.at_level(logging.INFO, logger="dask_runners.parallel"):
        second = parallel_for(double, range(25), output_dir=tmp_path, shard_size=10)
        assert list(second) == [2 * i for i in range(13, 25)]
    assert second.skipped == 13 and "13 of 25 items already have results" in caplog.text
    assert sorted(indices_on_disk(tmp_path)) == list(range(25))
    assert [r["result"] for r in read_shards(tmp_path)] == [2 * i for i in range(25)]
    assert list(parallel_for(double, range(25), output_dir=tmp_path, shard_size=10)) == []  # all done


def test_a_line_cut_short_by_a_kill_is_never_read_and_its_item_runs_again(tmp_path):
    first = parallel_for(double, range(8), output_dir=tmp_path, shard_size=10)
    [next(first) for _ in range(5)]
    first.close()
    with open(tmp_path / "shard-00000.jsonl.partial", "a") as partial:
        partial.write('{"index": 5, "res')  # the process died while writing this line
    second = parallel_for(double, range(8), output_dir=tmp_path, shard_size=10, with_index=True)
    assert list(second) == [(i, 2 * i) for i in range(5, 8)]
    assert sorted(indices_on_disk(tmp_path)) == list(range(8))


def test_a_directory_of_another_map_is_refused_unless_asked_to_start_over(tmp_path):
    list(parallel_for(double, range(8), output_dir=tmp_path, shard_size=4))
    with pytest.raises(ConfigurationError, match=r"items 8 there, 9 now.*if_exists='restart'"):
        parallel_for(double, range(9), output_dir=tmp_path, shard_size=4)
    with pytest.raises(ConfigurationError, match="shard_size 4 there, 5 now"):
        parallel_for(double, range(8), output_dir=tmp_path, shard_size=5)
    with pytest.raises(ConfigurationError, match="function"):
        parallel_for(lambda i: 3 * i, range(8), output_dir=tmp_path, shard_size=4)
    with pytest.raises(ConfigurationError, match="already holds 2 shard"):
        parallel_for(double, range(8), output_dir=tmp_path, shard_size=4, if_exists="error")
    again = list(parallel_for(lambda i: 3 * i, range(9), output_dir=tmp_path, shard_size=4, if_exists="restart"))
    assert again == [3 * i for i in range(9)]
    assert [r["result"] for r in read_shards(tmp_path)] == again


def test_shards_write_numpy_values(tmp_path):
    np = need_module("numpy")
    list(parallel_for(lambda i: {"v": np.float32(i), "a": np.arange(2)}, range(2), output_dir=tmp_path))
    assert [r["result"] for r in read_shards(tmp_path)] == [{"v": 0.0, "a": [0, 1]}, {"v": 1.0, "a": [0, 1]}]


def test_unwritable_results_say_what_to_return(tmp_path):
    with pytest.raises(TypeError, match="cannot be written as JSON"):
        list(parallel_for(lambda i: object(), range(1), output_dir=tmp_path))


def test_progress_in_a_log_is_one_line_per_report():
    stream = io.StringIO()
    progress = Progress("predict", 4, enabled=True, stream=stream, interval=0)
    progress.update(2)
    progress.update(2, failed=1)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[-1].startswith("predict [########################] 4/4") and "(1 failed)" in lines[-1]


def test_progress_is_quiet_in_a_log_unless_asked():
    stream = io.StringIO()
    progress = Progress("predict", 4, stream=stream, interval=0)
    progress.update(4)
    progress.close()
    assert stream.getvalue() == ""


# -- on a cluster ---------------------------------------------------------------------
BUILDS: list = []  # the in-process workers share this module, so they count here


def counted_setup(scale):
    return functools.partial(_counted_setup, scale)


def _counted_setup(scale):
    BUILDS.append(scale)
    return {"scale": scale}


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=2, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            yield client


def test_on_a_cluster_results_come_in_input_order(client):
    assert list(parallel_for(double, range(200), client=client)) == [2 * i for i in range(200)]


def test_the_current_client_is_used_by_default(client):
    def where(x):
        from distributed import get_worker

        return get_worker().address

    assert set(parallel_for(where, range(20))) <= set(client.nthreads())


def test_as_completed_yields_every_index_once(client):
    pairs = list(parallel_for(double, range(50), client=client, ordered=False, with_index=True))
    assert sorted(pairs) == [(i, 2 * i) for i in range(50)]


def test_at_most_max_in_flight_items_are_taken_from_the_input(client):
    taken, handed_out, most = [0], [0], [0]

    def items():
        for i in range(300):
            taken[0] += 1
            most[0] = max(most[0], taken[0] - handed_out[0])
            yield i

    for _ in parallel_for(double, items(), client=client, max_in_flight=10):
        handed_out[0] += 1
    assert handed_out[0] == 300
    assert most[0] <= 10


def test_failures_on_a_cluster_keep_the_other_results(client):
    loop = parallel_for(fails_on_three, range(6), client=client, on_error="return")
    results = list(loop)
    assert [r for r in results if not isinstance(r, ItemFailure)] == [0, 1, 2, 4, 5]
    assert results[3].error == "ValueError: bad item 3" and "fails_on_three" in results[3].traceback


def test_setup_builds_once_per_worker_and_is_registered_once(client):
    BUILDS.clear()
    setup = counted_setup(3)
    assert list(parallel_for(scaled, range(40), client=client, setup=setup, environment="once")) == [
        3 * i for i in range(40)
    ]
    list(parallel_for(scaled, range(40), client=client, setup=setup, environment="once"))
    assert len(BUILDS) == 2  # one per worker, not per item, nor per call


def test_lazy_environment_builds_on_first_use(client):
    BUILDS.clear()
    setup = counted_setup(5)
    client.register_plugin(WorkerEnvironment(setup, name="lazy", lazy=True))
    assert BUILDS == []
    assert client.submit(lambda: worker_environment("lazy")["scale"], pure=False).result() == 5
    assert len(BUILDS) == 1


def test_a_missing_environment_is_a_per_item_failure_that_says_what_to_do(client):
    results = list(parallel_for(scaled, range(2), client=client, environment="nowhere", on_error="return"))
    assert all(isinstance(r, ItemFailure) for r in results)
    assert "no environment named 'nowhere'" in results[0].error and "worker_setup" in results[0].error


def first_at_once_then_30_s(x):
    import time

    time.sleep(0 if x == 0 else 30)
    return x


@pytest.mark.timeout(60)
def test_breaking_out_cancels_what_is_in_flight():
    """Items of 30 s: only a real cancel lets the loop end at once and the cluster forget them.

    A cluster of its own, in processes: the threads of a task that is cancelled keep sleeping
    (Python cannot stop them), and closing the cluster ends the processes instead of waiting.
    """
    import time

    with LocalCluster(n_workers=2, threads_per_worker=2, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            loop = parallel_for(first_at_once_then_30_s, range(100), client=client, max_in_flight=8)
            assert next(loop) == 0
            in_flight = sum(len(keys) for keys in client.processing().values())
            assert in_flight >= 4, in_flight  # a task on each of the four threads
            start = time.monotonic()
            loop.close()
            # close() returns in 0-1 ms, and the scheduler has forgotten every task 0.06-0.07 s
            # after it, in 4 runs (2026-12-02): against the 30 s the tasks would take
            assert timing("parallel_for close", time.monotonic() - start) < 1
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline and (
                client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))
                or any(client.processing().values())
            ):
                time.sleep(0.05)
            # the scheduler forgot every task; each worker holds them as cancelled, or not at all
            assert client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)) == 0
            states = client.run(lambda dask_worker: sorted({ts.state for ts in dask_worker.state.tasks.values()}))
            assert all(set(found) <= {"cancelled"} for found in states.values()), states
            assert timing("parallel_for forgotten", time.monotonic() - start) < 2


def slow_double(i):
    import time

    time.sleep(0.05)
    return 2 * i


def test_stop_maps_records_what_finishes_in_the_grace_period_then_the_map_resumes(client, tmp_path):
    from dask_runners import MapStopped, stop_maps
    from dask_runners.parallel import _stop_requested

    threading.Timer(0.6, stop_maps).start()
    first = parallel_for(slow_double, range(200), client=client, output_dir=tmp_path, shard_size=50)
    try:
        with pytest.raises(MapStopped) as stopped:
            list(first)
    finally:
        _stop_requested.clear()
    assert stopped.value.code == 75 and stopped.value.abandoned == 0  # 30 s of grace: every item in flight finished
    kept = sorted(indices_on_disk(tmp_path))
    assert kept == sorted(set(kept)) and 0 < len(kept) < 200 and len(kept) == first.done
    second = parallel_for(slow_double, range(200), client=client, output_dir=tmp_path, shard_size=50, with_index=True)
    rest = list(second)
    assert second.skipped == len(kept) and sorted(i for i, _ in rest) == sorted(set(range(200)) - set(kept))
    assert sorted(indices_on_disk(tmp_path)) == list(range(200))
