"""The documentation builds without warnings, and its code cannot rot.

* Every ``.. code-block:: python`` in ``docs/*.rst`` must compile.
* The blocks of one page preceded by the comment ``.. runnable`` run together,
  in order, as one script in a subprocess; it must exit 0.
* Every public name and every deadline is documented.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
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


@pytest.mark.timeout(320)
def test_sphinx_build_has_no_warnings(tmp_path):
    argv = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", str(DOCS), str(tmp_path / "html")]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (
        f"{' '.join(argv)} exited {result.returncode}\n"
        f"--- stdout ---\n{result.stdout[-3000:]}\n--- stderr ---\n{result.stderr[-6000:]}"
    )


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


def test_importing_the_package_does_not_import_mpi4py():
    """autodoc imports dask_runners; MPI must not start there."""
    code = "import sys, dask_runners; assert 'mpi4py' not in sys.modules, 'mpi4py imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
