"""The scheduler rank's open-file limit, against fake getrlimit/setrlimit."""

import logging
import resource

from dask_runners.limits import descriptors_needed, raise_open_file_limit


class FakeLimits:
    def __init__(self, soft, hard, refuse=False):
        self.soft, self.hard, self.refuse = soft, hard, refuse

    def getrlimit(self, which):
        assert which == resource.RLIMIT_NOFILE
        return self.soft, self.hard

    def setrlimit(self, which, limits):
        if self.refuse:
            raise ValueError("not allowed")
        self.soft, self.hard = limits


def test_soft_limit_is_raised_to_the_hard_limit():
    limits = FakeLimits(1024, 65536)
    assert raise_open_file_limit(1000, limits.getrlimit, limits.setrlimit) == 65536
    assert (limits.soft, limits.hard) == (65536, 65536)


def test_an_unlimited_hard_limit_gives_a_large_finite_soft_limit():
    limits = FakeLimits(1024, resource.RLIM_INFINITY)
    assert raise_open_file_limit(4, limits.getrlimit, limits.setrlimit) == 1 << 20


def test_too_low_a_hard_limit_is_reported_with_the_numbers(caplog):
    limits = FakeLimits(1024, 4096)
    with caplog.at_level(logging.WARNING, logger="dask_runners.limits"):
        assert raise_open_file_limit(10_000, limits.getrlimit, limits.setrlimit) == 4096
    assert "10000 ranks need about 20256 open files" in caplog.text
    assert "ulimit -n 20256" in caplog.text


def test_enough_is_silent_and_a_refusal_keeps_the_old_limit(caplog):
    limits = FakeLimits(1024, 65536, refuse=True)
    with caplog.at_level(logging.WARNING, logger="dask_runners.limits"):
        assert raise_open_file_limit(100, limits.getrlimit, limits.setrlimit) == 1024
    assert caplog.text == ""


def test_needed_descriptors_grow_with_the_world():
    assert descriptors_needed(None) is None
    assert descriptors_needed(10_000) - descriptors_needed(1_000) == 18_000
