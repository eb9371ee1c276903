"""Every module the package imports is installed by its own requirements, and
the range of dask and distributed that setup.cfg declares is the one CI tests
and the docs state.

A module that only this machine happens to have (``cryptography`` came with
another tool here) would work in every test and fail on a fresh install.
"""

import ast
import configparser
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "dask_runners"
#: Imported only by the runner that needs it, and installed by that extra.
OPTIONAL = {"mpi4py": "mpi"}
#: The pins of ci/setup.sh's oldest environment.
OLDEST_CONSTRAINTS = ROOT / "ci" / "oldest-constraints.txt"
#: Released together, with the same version.
DASK_PAIR = ("dask", "distributed")
#: Pages that state the supported range as ``distributed>=LOW,<HIGH``.
RANGE_PAGES = [ROOT / "README.rst", ROOT / "docs" / "index.rst"]


def _requirements() -> tuple[set[str], dict[str, set[str]]]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")

    def names(text: str) -> set[str]:
        return {re.split(r"[<>=!~\[; ]", line.strip())[0].lower() for line in text.splitlines() if line.strip()}

    options = config["options"]
    extras = {name: names(value) for name, value in config["options.extras_require"].items()}
    return names(options["install_requires"]), extras


def _imported_top_level_modules() -> set[str]:
    found = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"dask_runners"}


def test_every_imported_module_is_a_requirement():
    required, extras = _requirements()
    distributions = importlib.metadata.packages_distributions()
    missing = []
    for module in sorted(_imported_top_level_modules()):
        providers = {name.lower() for name in distributions.get(module, [module])}
        if module in OPTIONAL:
            if not providers & extras[OPTIONAL[module]]:
                missing.append(f"{module} (extra {OPTIONAL[module]!r})")
        elif not providers & required:
            missing.append(module)
    assert not missing, f"imported by dask_runners but not in setup.cfg's requirements: {missing}"


def _install_requires() -> dict[str, Requirement]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    requirements = map(Requirement, filter(None, config["options"]["install_requires"].splitlines()))
    return {requirement.name.lower(): requirement for requirement in requirements}


def _bound(requirement: Requirement, operator: str) -> str | None:
    return next((spec.version for spec in requirement.specifier if spec.operator == operator), None)


def _oldest_pins() -> dict[str, str]:
    lines = (line.strip() for line in OLDEST_CONSTRAINTS.read_text().splitlines())
    return dict(line.split("==") for line in lines if line and not line.startswith("#"))


def test_ci_pins_the_lower_bounds_setup_cfg_declares():
    """The oldest environment has exactly the lower bounds, the same for dask and distributed."""
    pins, required = _oldest_pins(), _install_requires()
    lower = {name: _bound(required[name], ">=") for name in DASK_PAIR}
    assert lower == {name: pins.get(name) for name in DASK_PAIR}, f"setup.cfg: {lower}; {OLDEST_CONSTRAINTS}: {pins}"
    assert len(set(lower.values())) == 1, f"dask and distributed are released together: {lower}"


def test_distributed_is_bounded_above_and_the_installed_release_is_in_range():
    """An untested distributed is never picked; the one under test is allowed."""
    required = _install_requires()
    assert _bound(required["distributed"], "<") is not None, "distributed needs an upper bound: its private API is used"
    for name in DASK_PAIR:
        installed = importlib.metadata.version(name)
        assert required[name].specifier.contains(installed), f"{name} {installed} is outside {required[name]}"


@pytest.mark.parametrize("page", RANGE_PAGES, ids=lambda page: page.name)
def test_the_docs_state_the_range_setup_cfg_declares(page):
    stated = re.findall(r"``distributed([<>=!~,.0-9]+)``", page.read_text())
    declared = _install_requires()["distributed"].specifier
    assert stated and all(SpecifierSet(text) == declared for text in stated), f"{page.name}: {stated}, not {declared}"
