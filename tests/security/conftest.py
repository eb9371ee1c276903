"""Fixtures of the security tests."""

import pytest

from ..launch import need, slurm_is_up


@pytest.fixture
def slurm():
    """A running Slurm, for the tests that launch ``srun``."""
    need(slurm_is_up(), "a running Slurm (ci/start-slurm.sh)")
