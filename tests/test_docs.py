"""The documentation builds without warnings, and its code cannot rot.

* Every ``.. code-block:: python`` in ``docs/*.rst`` must compile.
* The blocks of one page preceded by the comment ``.. runnable`` run together,
  in order, as one script in a subprocess; it must exit 0.
* Blocks meant to be run under a launcher carry a comment right before them
  (an RST comment, so readers never see it):

  ``.. file: NAME``
      The block is saved as ``NAME`` in the job's working directory, for the
      launcher blocks after it on the same page (a later block of the same
      name replaces it, as it would for a reader working down the page).
  ``.. runs-under: LAUNCHER[, LAUNCHER...]``
      Before a ``console`` block: every ``$ `` line runs, in order, as one
      bash script in that directory, under the real launchers it names
      (``local``, ``slurm``, ``openmpi``, ``mpich``). It must exit 0 and
      print no traceback, and leave no scheduler file behind.
      Before a ``bash`` block marked ``sbatch``: the block is a batch script,
      submitted with ``sbatch --wait`` to the real Slurm; the job must exit 0
      and its output hold no traceback.
  ``.. checks-syntax: pbs|lsf|flux|slurm``
      Batch scripts for what this machine does not have (PBS, LSF, Flux,
      GPUs, more than one Slurm node): ``bash -n`` must accept them, they
      must carry their system's directives, and every Python script they
      start must be a ``.. file:`` block of the page (which compiles like
      every other). The GPU recipe's script also runs under ``srun`` with
      four GPUs named in ``CUDA_VISIBLE_DEVICES``, to check the GPU each
      worker keeps.

  What the harness adds to a user's environment, and why: ``python`` and
  ``dask-runner`` run this checkout with the test's interpreter; Open MPI
  may run as root and oversubscribe the 2 cores (``OMPI_ALLOW_RUN_AS_ROOT``,
  ``OMPI_MCA_rmaps_base_oversubscribe``); a plain ``mpiexec`` is MPICH's
  (Debian names it ``mpiexec.mpich``), and a command that starts MPICH
  (``mpiexec``, ``mpiexec.mpich``, ``srun --mpi=pmi2``) runs with the mpi4py
  wheel switched to MPICH's ABI, as ``ci/mpich-env.sh`` does: that is what
  "mpi4py built against MPICH" means on this machine.
* The how-it-works page holds its sequence diagrams as rendered SVG images.
* Every public name, every runner argument, every deadline and every dask
  config key the package reads is documented, with its default.
"""

from __future__ import annotations

import inspect
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .launch import OPEN_MPI_ENV, PYTHON, mpi4py_importable, need, slurm_is_up

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.rst"))

BLOCK = re.compile(
    r"^(?P<indent>[ \t]*)\.\. code-block:: python[ \t]*\n"
    r"(?P<options>(?:(?P=indent)[ \t]+:.*\n)*)"
    r"(?P<body>(?:[ \t]*\n|(?P=indent)[ \t]+.*\n)+)",
    re.MULTILINE,
)


def python_blocks(page: Path) -> list[tuple[int, str, bool]]:
    """(line, code, runnable) for every python code block of ``page``."""
    text = page.read_text()
    blocks = []
    for match in BLOCK.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        code = textwrap.dedent(match.group("body")).strip("\n") + "\n"
        previous_line = text[: match.start()].rstrip().rsplit("\n", 1)[-1]
        runnable = previous_line.strip() == ".. runnable"
        blocks.append((line, code, runnable))
    return blocks


ALL_BLOCKS = [
    pytest.param(page, line, code, id=f"{page.name}:{line}")
    for page in PAGES
    for line, code, _ in python_blocks(page)
]


def test_docs_have_python_blocks_to_check():
    assert len(ALL_BLOCKS) >= 10, "the block pattern no longer finds the examples"
    assert any(runnable for page in PAGES for _, _, runnable in python_blocks(page))


@pytest.mark.parametrize("page, line, code", ALL_BLOCKS)
def test_python_block_compiles(page, line, code):
    compile(code, f"{page.name}:{line}", "exec")


RUNNABLE_PAGES = [
    pytest.param(page, id=page.name)
    for page in PAGES
    if any(runnable for _, _, runnable in python_blocks(page))
]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("page", RUNNABLE_PAGES)
def test_runnable_blocks_run(page, tmp_path):
    script = tmp_path / f"{page.stem}.py"
    script.write_text("\n\n".join(code for _, code, runnable in python_blocks(page) if runnable))
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert result.returncode == 0, (
        f"the runnable blocks of {page.name} failed (exit {result.returncode})\n"
        f"--- stdout ---\n{result.stdout[-3000:]}\n--- stderr ---\n{result.stderr[-6000:]}"
    )


@pytest.fixture(scope="module")
def sphinx_build(tmp_path_factory):
    """Build the HTML once for the tests that look at it."""
    out = tmp_path_factory.mktemp("docs") / "html"
    argv = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", str(DOCS), str(out)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    return argv, result, out


@pytest.mark.timeout(320)
def test_sphinx_build_has_no_warnings(sphinx_build):
    argv, result, _ = sphinx_build
    assert result.returncode == 0, (
        f"{' '.join(argv)} exited {result.returncode}\n"
        f"--- stdout ---\n{result.stdout[-3000:]}\n--- stderr ---\n{result.stderr[-6000:]}"
    )


@pytest.mark.timeout(320)
def test_sequence_diagrams_are_rendered_images(sphinx_build):
    """Each ``.. uml::`` of how-it-works becomes an SVG file in the HTML, drawn
    at build time: no script, nothing fetched when the page is viewed."""
    _, result, out = sphinx_build
    assert result.returncode == 0, result.stderr[-3000:]
    source = (DOCS / "how-it-works.rst").read_text()
    expected = source.count(".. uml::")
    assert expected >= 4, "the shutdown, discovery and failure diagrams are gone from how-it-works.rst"
    page = (out / "how-it-works.html").read_text()
    images = re.findall(r'<img[^>]+src="(_images/plantuml-[0-9a-f]+\.svg)"', page)
    assert len(images) == expected, (expected, images)
    for image in images:
        svg = (out / image).read_text()
        assert svg.lstrip().startswith("<?xml") and "<svg" in svg, image
    drawn = " ".join((out / image).read_text() for image in images)
    for label in ("scheduler file", "Ibcast", "stop (exit code)", "SchedulerLostError", "ShutdownTimeoutError"):
        assert label in drawn, f"no diagram shows {label!r}"
    assert not re.search(r"<script[^>]+src=\"https?://", page), "a script from the network"


def test_every_public_name_is_in_the_api_reference():
    import dask_runners
    import dask_runners.exceptions

    api = (DOCS / "api.rst").read_text()
    names = set(dask_runners.__all__)
    names |= {
        name
        for name, value in vars(dask_runners.exceptions).items()
        if isinstance(value, type) and issubclass(value, Exception)
    }
    missing = sorted(name for name in names if not re.search(rf"\b{name}\b", api))
    assert missing == [], f"not in docs/api.rst: {missing}"


def test_every_deadline_is_documented_with_its_default():
    from dask_runners.config import DEFAULT_TIMEOUTS

    page = (DOCS / "configuration.rst").read_text()
    for name, default in DEFAULT_TIMEOUTS.items():
        row = re.search(rf"``runners\.timeouts\.{name}``\s+(\d+) s", page)
        assert row, f"runners.timeouts.{name} is missing from docs/configuration.rst"
        assert float(row.group(1)) == default, (name, row.group(1), default)


def test_every_runner_argument_is_documented():
    import dask_runners

    page = (DOCS / "configuration.rst").read_text()
    owners = [dask_runners.BaseRunner, dask_runners.SLURMRunner, dask_runners.MPIRunner,
              dask_runners.SchedulerFileRunner, dask_runners.Runner]
    missing = []
    for owner in owners:
        function = owner.__init__ if isinstance(owner, type) else owner
        for name, parameter in inspect.signature(function).parameters.items():
            if parameter.kind in (parameter.KEYWORD_ONLY, parameter.POSITIONAL_OR_KEYWORD) and name != "self":
                if not re.search(rf"^``{name}`` \(", page, re.MULTILINE):
                    missing.append(f"{owner.__name__}({name}=)")
    assert missing == [], f"not described on docs/configuration.rst: {missing}"


def test_importing_the_package_does_not_import_mpi4py():
    """autodoc imports dask_runners; MPI must not start there."""
    code = "import sys, dask_runners; assert 'mpi4py' not in sys.modules, 'mpi4py imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


# -- launcher blocks: console commands and batch scripts ------------------------

ANY_BLOCK = re.compile(
    r"^(?P<indent>[ \t]*)\.\. code-block:: (?P<lang>[\w-]+)[ \t]*\n"
    r"(?P<options>(?:(?P=indent)[ \t]+:.*\n)*)"
    r"(?P<body>(?:[ \t]*\n|(?P=indent)[ \t]+.*\n)+)",
    re.MULTILINE,
)
MARKER = re.compile(r"^\s*\.\. (?P<name>file|runs-under|checks-syntax): (?P<value>.+?)\s*$")
LAUNCHER_KINDS = {"local", "slurm", "openmpi", "mpich", "sbatch"}
SYNTAX_KINDS = {"pbs": "#PBS", "lsf": "#BSUB", "flux": "#FLUX:", "slurm": "#SBATCH"}
LAUNCH_PAGES = ("quickstart.rst", "cookbook.rst")


def marked_blocks(page: Path) -> list[dict]:
    """Every code block of ``page`` with the marker comments right before it."""
    text = page.read_text()
    blocks = []
    for match in ANY_BLOCK.finditer(text):
        markers = {}
        for previous in reversed(text[: match.start()].rstrip("\n").split("\n")):
            if not previous.strip():
                continue
            found = MARKER.match(previous)
            if not found:
                break
            markers[found["name"]] = found["value"]
        blocks.append({
            "line": text.count("\n", 0, match.start()) + 1,
            "lang": match["lang"],
            "code": textwrap.dedent(match["body"]).strip("\n") + "\n",
            **markers,
        })
    return blocks


def console_commands(code: str) -> list[str]:
    """The ``$ `` lines of a console block, continuation lines joined."""
    commands, current = [], None
    for line in code.splitlines():
        if current is not None:
            current += "\n" + line
        elif line.startswith("$ "):
            current = line[2:]
        else:
            continue
        if not current.endswith("\\"):
            commands.append(current)
            current = None
    return commands


def _starts_mpich(command: str) -> bool:
    words = shlex.split(command, comments=True)
    if not words:
        return False
    return words[0] in ("mpiexec", "mpiexec.mpich") or (words[0] == "srun" and "--mpi=pmi2" in words)


def _launch_param(page, block):
    return pytest.param(page, block, id=f"{page.name}:{block['line']}")


LAUNCH_BLOCKS = [
    _launch_param(page, block)
    for page in PAGES
    for block in marked_blocks(page)
    if "runs-under" in block
]
SYNTAX_BLOCKS = [
    _launch_param(page, block)
    for page in PAGES
    for block in marked_blocks(page)
    if "checks-syntax" in block
]


def test_launch_pages_mark_every_command_block():
    """No console or shell block of the launch recipes goes unchecked."""
    assert len(LAUNCH_BLOCKS) >= 8 and len(SYNTAX_BLOCKS) >= 3, "the markers are no longer found"
    unmarked = [
        f"{name}:{block['line']}"
        for name in LAUNCH_PAGES
        for block in marked_blocks(DOCS / name)
        if block["lang"] in ("console", "bash") and not ({"runs-under", "checks-syntax"} & set(block))
    ]
    assert unmarked == [], f"console/bash blocks with neither runs-under nor checks-syntax: {unmarked}"
    for _, block in (param.values for param in LAUNCH_BLOCKS):
        kinds = {kind.strip() for kind in block["runs-under"].split(",")}
        assert kinds <= LAUNCHER_KINDS, kinds - LAUNCHER_KINDS


def _page_files(page: Path, before_line: int) -> dict[str, str]:
    files = {}
    for block in marked_blocks(page):
        if block["line"] < before_line and "file" in block:
            files[block["file"]] = block["code"]
    return files


@pytest.fixture
def user_env(tmp_path):
    """The environment a user's shell would have, pointed at this checkout."""
    bin_dir = tmp_path / ".bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(PYTHON)
    (bin_dir / "dask-runner").write_text(f'#!/bin/sh\nexec "{PYTHON}" -m dask_runners "$@"\n')
    (bin_dir / "dask-runner").chmod(0o755)
    if shutil.which("mpiexec.mpich"):
        # a script, not a link: Hydra finds its proxy next to the path it was started as
        (bin_dir / "mpiexec").write_text('#!/bin/sh\nexec mpiexec.mpich "$@"\n')
        (bin_dir / "mpiexec").chmod(0o755)
    env = dict(os.environ)
    env.update(OPEN_MPI_ENV)
    env.update({
        "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        "HOME": str(tmp_path),
        "OMPI_MCA_rmaps_base_oversubscribe": "1",
    })
    return env


@pytest.fixture
def mpich_env_lazy(request):
    """MPICH's ABI switch for mpi4py, only when a test needs it."""
    def get():
        return request.getfixturevalue("mpich_env")
    return get


def _need_launchers(kinds: set[str]) -> None:
    if kinds & {"slurm", "sbatch"}:
        need(slurm_is_up(), "a running Slurm (ci/start-slurm.sh)")
    if "openmpi" in kinds:
        need(shutil.which("mpirun") is not None and mpi4py_importable(), "Open MPI with mpi4py")
    if "mpich" in kinds:
        need(shutil.which("mpiexec.mpich") is not None, "MPICH")


def _assert_ran_clean(what: str, returncode: int, output: str, workdir: Path) -> None:
    assert returncode == 0, f"{what} exited {returncode}\n{output[-6000:]}"
    assert "Traceback" not in output, f"{what} printed a traceback\n{output[-6000:]}"
    assert list(workdir.glob("scheduler-*.json")) == [], f"{what} left a scheduler file"


@pytest.mark.timeout(600)
@pytest.mark.parametrize("page, block", LAUNCH_BLOCKS)
def test_launcher_block_runs(page, block, tmp_path, user_env, mpich_env_lazy):
    kinds = {kind.strip() for kind in block["runs-under"].split(",")}
    _need_launchers(kinds)
    workdir = tmp_path / "job"
    workdir.mkdir()
    for name, code in _page_files(page, block["line"]).items():
        (workdir / name).write_text(code)
    where = f"{page.name}:{block['line']}"

    if "sbatch" in kinds:
        assert block["lang"] == "bash" and block["code"].startswith("#!/bin/bash"), where
        script = workdir / block.get("file", "job.sbatch")
        script.write_text(block["code"])
        result = subprocess.run(
            ["sbatch", "--wait", "--output", "slurm-%j.out", script.name],
            cwd=workdir, env=user_env, capture_output=True, text=True, timeout=540,
        )
        output = result.stdout + result.stderr + "".join(p.read_text() for p in workdir.glob("slurm-*.out"))
        _assert_ran_clean(f"sbatch --wait {where}", result.returncode, output, workdir)
        return

    assert block["lang"] == "console", where
    commands = console_commands(block["code"])
    assert commands, f"{where} has no $ lines"
    lines = ["set -euo pipefail"]
    for command in commands:
        if _starts_mpich(command):
            mpich = mpich_env_lazy()
            exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in mpich.items())
            lines.append(f"(\n  export {exports}\n  {command}\n)")
        else:
            lines.append(command)
    result = subprocess.run(
        ["bash", "-c", "\n".join(lines)],
        cwd=workdir, env=user_env, capture_output=True, text=True, timeout=540,
    )
    _assert_ran_clean(f"{where} ({'; '.join(commands)})", result.returncode, result.stdout + result.stderr, workdir)


@pytest.mark.parametrize("page, block", SYNTAX_BLOCKS)
def test_batch_script_for_another_system_is_well_formed(page, block, tmp_path):
    kind = block["checks-syntax"]
    assert kind in SYNTAX_KINDS, kind
    where = f"{page.name}:{block['line']}"
    code = block["code"]
    assert code.startswith("#!/bin/bash"), where
    assert SYNTAX_KINDS[kind] in code, f"{where}: a {kind} script without {SYNTAX_KINDS[kind]} lines"
    script = tmp_path / "job.sh"
    script.write_text(code)
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, f"{where}: {result.stderr}"
    files = _page_files(page, block["line"])
    started = re.findall(r"(?:python|dask-runner run)\s+(\S+\.py)", code)
    assert started, f"{where} starts no Python script"
    for name in started:
        assert name in files, f"{where} starts {name}, which is no `.. file:` block above it"
        compile(files[name], name, "exec")


@pytest.mark.timeout(180)
def test_gpu_recipe_gives_each_worker_its_own_gpu(tmp_path, user_env):
    """The cookbook's claim: six tasks on a node with four GPUs, and local
    ranks 2 to 5 keep GPUs 2, 3, 0 and 1. No GPU is needed to check which
    one each worker keeps; the node's four are named as Slurm would."""
    need(slurm_is_up(), "a running Slurm (ci/start-slurm.sh)")
    script = _page_files(DOCS / "cookbook.rst", 10**9)["gpu_script.py"]
    (tmp_path / "gpu_script.py").write_text(script)
    env = {**user_env, "CUDA_VISIBLE_DEVICES": "0,1,2,3"}
    result = subprocess.run(
        ["srun", "-n", "6", "python", "gpu_script.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=150,
    )
    _assert_ran_clean("srun -n 6 python gpu_script.py", result.returncode, result.stdout + result.stderr, tmp_path)
    import ast

    devices = ast.literal_eval(result.stdout.strip().splitlines()[-1])
    assert sorted(devices.values()) == ["0", "1", "2", "3"], devices
