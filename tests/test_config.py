import itertools

import dask
import pytest

from dask_runners.config import DEFAULT_TIMEOUTS, Timeouts, backoff_delays


def test_defaults_when_nothing_is_set():
    assert Timeouts.resolve() == Timeouts(**DEFAULT_TIMEOUTS)


def test_argument_beats_config_beats_default():
    with dask.config.set({"runners.timeouts.discovery": "2 minutes", "runners.timeouts.shutdown": 7}):
        timeouts = Timeouts.resolve({"shutdown": "3s"})
    assert timeouts.discovery == 120
    assert timeouts.shutdown == 3
    assert timeouts.workers == DEFAULT_TIMEOUTS["workers"]


def test_unknown_timeout_name_is_rejected_with_the_known_names():
    with pytest.raises(ValueError, match="discovery"):
        Timeouts.resolve({"discovry": 1})


def test_backoff_looks_fast_first_then_at_most_twice_a_second():
    delays = list(itertools.islice(backoff_delays(), 400))
    assert delays[0] <= 0.01
    look_times = [0.0, *itertools.accumulate(delays)]
    assert sum(1 for t in look_times if t < 1.0) >= 8  # quick looks while the scheduler starts
    for start in range(1, 100):
        in_window = [t for t in look_times if start <= t < start + 1]
        assert len(in_window) <= 2, (start, in_window)


@pytest.mark.parametrize("value", [0, -1, "-1", "abc", "nan", float("inf"), "1 fortnight", [3]])
def test_a_deadline_that_cannot_work_is_refused_naming_where_it_came_from(value):
    from dask_runners import ConfigurationError

    with pytest.raises(ConfigurationError, match=r"timeouts=\{'lease': \.\.\.\} is .*finite time above 0"):
        Timeouts.resolve({"lease": value})
    with dask.config.set({"runners.timeouts.shutdown": value}):
        with pytest.raises(ConfigurationError, match=r"runners\.timeouts\.shutdown \(DASK_RUNNERS__TIMEOUTS__SHUTDOWN\) is"):
            Timeouts.resolve()
