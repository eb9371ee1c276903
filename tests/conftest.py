"""Fixtures shared by the launcher and fault-injection tests."""

import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from .launch import OPEN_MPI_ENV, mpi4py_importable, need


@pytest.fixture(scope="session")
def mpich_env(tmp_path_factory) -> dict:
    """Environment under which mpi4py (an Open MPI build) loads MPICH instead."""
    candidates = sorted(Path("/usr/lib").glob("*/libmpich.so.12")) + sorted(Path("/usr/lib").glob("libmpich.so.12"))
    need(bool(candidates) and shutil.which("mpiexec.mpich") is not None, "MPICH")
    libdir = tmp_path_factory.mktemp("mpich-lib")
    (libdir / "libmpi.so.12").symlink_to(candidates[0])
    library_path = os.pathsep.join(filter(None, [str(libdir), os.environ.get("LD_LIBRARY_PATH")]))
    return {"MPI4PY_MPIABI": "mpich", "LD_LIBRARY_PATH": library_path}


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A TCP port on every interface that a listening socket of this process holds for the test."""
    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        yield taken.getsockname()[1]


@pytest.fixture
def job_dir(tmp_path) -> Path:
    """A working directory for one job, on the (shared) filesystem."""
    return tmp_path


@pytest.fixture
def open_mpi():
    """Open MPI's launcher: the command prefix before the rank count, and its environment."""
    need(shutil.which("mpirun") is not None and mpi4py_importable(), "Open MPI with mpi4py")
    return ["mpirun", "--oversubscribe", "-n"], OPEN_MPI_ENV


@pytest.fixture
def mpich(mpich_env):
    """MPICH's launcher: the command prefix before the rank count, and its environment."""
    need(mpi4py_importable(mpich_env), "mpi4py")
    return ["mpiexec.mpich", "-n"], mpich_env
