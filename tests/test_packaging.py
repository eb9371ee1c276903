"""Every module the package imports is installed by its own requirements.

A module that only this machine happens to have (``cryptography`` came with
another tool here) would work in every test and fail on a fresh install.
"""

import ast
import configparser
import importlib.metadata
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "dask_runners"
#: Imported only by the runner that needs it, and installed by that extra.
OPTIONAL = {"mpi4py": "mpi"}


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
