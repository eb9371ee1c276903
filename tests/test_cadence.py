"""A worker rank's worker runs distributed's periodic work at the runner's cadence, unless the user set it."""

import dask
import pytest
from distributed import Scheduler

import dask_runners  # noqa: F401  (loads runners.yaml into dask's defaults)
from dask_runners.cadence import DISTRIBUTED_KEYS, worker_cadence
from dask_runners.exceptions import ConfigurationError
from dask_runners.services.worker import WorkerSpec

TICK = "distributed.admin.tick.interval"
PROFILE = "distributed.worker.profile.interval"


def test_by_default_both_intervals_are_spaced_out():
    assert worker_cadence() == {PROFILE: "100ms", TICK: "200ms"}
    assert set(DISTRIBUTED_KEYS.values()) == {PROFILE, TICK}


@pytest.mark.parametrize("value", ["50ms", "1s", 5])
def test_a_distributed_key_the_user_changed_is_left_alone(value):
    with dask.config.set({TICK: value}):
        assert worker_cadence() == {PROFILE: "100ms"}


@pytest.mark.parametrize("value", ["20ms", 20, "0.02s"])
def test_distributeds_default_however_written_counts_as_not_set(value):
    with dask.config.set({TICK: value}):
        assert worker_cadence()[TICK] == "200ms"


def test_none_keeps_distributeds_value():
    with dask.config.set({"runners.worker-cadence.profile": None, "runners.worker-cadence.tick": None}):
        assert worker_cadence() == {}


@pytest.mark.parametrize("value", ["soon", 0, "-5ms", float("inf")])
def test_a_bad_interval_names_the_key_and_the_fix(value):
    with dask.config.set({"runners.worker-cadence.tick": value}):
        with pytest.raises(ConfigurationError, match=r"runners\.worker-cadence\.tick is .*'100ms'.*None"):
            worker_cadence()


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_only_the_worker_is_made_at_the_cadence():
    async with Scheduler(dashboard_address=None, port=0) as scheduler:
        async with WorkerSpec(options={"nthreads": 1}).make(scheduler.address, "w", None) as worker:
            callbacks = worker.periodic_callbacks
            assert (callbacks["tick"].callback_time, callbacks["profile"].callback_time) == (200, 100)
        assert scheduler.periodic_callbacks["tick"].callback_time == 20
    assert dask.config.get(TICK) == "20ms" and dask.config.get(PROFILE) == "10ms"


@pytest.mark.asyncio
async def test_a_nanny_passes_the_cadence_to_its_worker_process_and_the_users_config_wins():
    spec = WorkerSpec("distributed.Nanny", options={"config": {TICK: "40ms"}})
    nanny = spec.make("tcp://127.0.0.1:1", "w", None)
    assert (nanny.config[TICK], nanny.config[PROFILE]) == ("40ms", "100ms")
