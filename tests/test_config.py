import ast
import configparser
import itertools
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import dask
import pytest
import yaml

from dask_runners import config
from dask_runners.config import (
    DEFAULT_TIMEOUTS,
    DEFAULTS,
    RENAMED_VARIABLES,
    Timeouts,
    backoff_delays,
    config_value,
    env_variable,
)


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


# -- the packaged defaults (runners.yaml) and where each key is read, named and set ------------

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "dask_runners"


def leaves(tree: dict, prefix: str = "") -> dict:
    """``{"runners.timeouts.lease": "60s", ...}``: every key of a nested mapping, with its value."""
    found = {}
    for name, value in tree.items():
        key = f"{prefix}{name}"
        found.update(leaves(value, f"{key}.") if isinstance(value, dict) else {key: value})
    return found


YAML_KEYS = leaves(DEFAULTS)


def clean_environment(**extra) -> dict:
    """This environment without any DASK_* variable (CI's own, a developer's), plus ``extra``."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("DASK_")}, **extra}


def python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=clean_environment(**env)
    )


def test_the_yaml_has_every_known_key():
    assert {"runners.launcher", "runners.security", "runners.pin-gpus", "runners.timeouts.lease",
            "runners.local.workers", "runners.local.fallback", "runners.serve.nthreads",
            "runners.logging.level", "runners.dashboard.public"} <= set(YAML_KEYS)
    assert DEFAULT_TIMEOUTS == {"discovery": 300.0, "workers": 300.0, "shutdown": 30.0, "lease": 60.0}


def test_importing_the_package_makes_the_yaml_dask_defaults_under_what_the_user_set():
    code = "import json, dask, dask_runners; print(json.dumps(dask.config.get('runners')))"
    result = python(code)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == DEFAULTS["runners"]
    code = ("import dask, dask_runners; dask.config.refresh(); "
            "print(dask.config.get('runners.serve.scheduler-file'), dask.config.get('runners.local.workers'), "
            "dask.config.get('runners.security'))")
    result = python(code, DASK_RUNNERS__SERVE__SCHEDULER_FILE="/tmp/c.json", DASK_RUNNERS__LOCAL__WORKERS="2")
    assert result.stdout.split() == ["/tmp/c.json", "2", "True"], result.stderr


def test_dask_config_get_runners_prints_the_defaults(tmp_path):
    """The ``dask_cli`` entry point makes ``dask`` import the package (a reinstall registers it).

    Run elsewhere than the checkout, whose ``*.egg-info`` a ``setup.py`` command may have left
    behind, stale, first on ``sys.path``.
    """
    result = subprocess.run([sys.executable, "-m", "dask", "config", "get", "runners"], capture_output=True,
                            text=True, timeout=60, env=clean_environment(), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout) == DEFAULTS["runners"]


def test_the_yaml_ships_in_the_package():
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    assert "runners.yaml" in setup["options.package_data"]["dask_runners"].split()
    assert "dask_runners.cli:main" in setup["options.entry_points"]["dask_cli"]


def keys_read_by_the_source() -> tuple[set[str], set[str]]:
    """Literal ``runners.*`` keys the package reads, and the prefixes of keys built with an f-string.

    A read is ``dask.config.get(KEY)``, ``config_value(KEY)`` or a ``dask-runner``
    option's ``key=KEY``.
    """
    keys, prefixes = set(), set()
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            function = ast.unparse(node.func)
            arguments = node.args[:1] if function in ("dask.config.get", "config_value") else []
            arguments += [keyword.value for keyword in node.keywords if keyword.arg == "key" and function == "_option"]
            for argument in arguments:
                if isinstance(argument, ast.Constant) and str(argument.value).startswith("runners."):
                    keys.add(argument.value)
                elif isinstance(argument, ast.JoinedStr) and isinstance(argument.values[0], ast.Constant):
                    prefixes.add(argument.values[0].value)
    return keys, prefixes


def test_every_key_the_source_reads_is_in_the_yaml():
    keys, prefixes = keys_read_by_the_source()
    assert {"runners.security", "runners.local.workers", "runners.launcher", "runners.serve.nthreads",
            "runners.launch.ranks"} <= keys, "the source scan no longer finds the reads"
    assert "runners.timeouts." in prefixes
    assert sorted(keys - set(YAML_KEYS)) == []
    assert [prefix for prefix in prefixes if not any(key.startswith(prefix) for key in YAML_KEYS)] == []
    assert sorted(set(RENAMED_VARIABLES.values()) - set(YAML_KEYS)) == []


def test_the_configuration_page_names_every_key_with_its_default_and_variable():
    page = (ROOT / "docs" / "configuration.rst").read_text()
    missing = []
    for key, default in YAML_KEYS.items():
        shown = "(default: " if default is None else f"(default ``{default}``)"
        entry = re.search(rf"^``{re.escape(key)}`` {re.escape(shown)}.*\n((?:    .*\n)+)", page, re.MULTILINE)
        if entry is None or env_variable(key) not in entry.group(1):
            missing.append(f"``{key}`` {shown} ... {env_variable(key)}")
    assert missing == [], "not on docs/configuration.rst as an entry with its default and variable:\n" + "\n".join(missing)


def test_the_environment_variable_of_a_key():
    assert env_variable("runners.timeouts.lease") == "DASK_RUNNERS__TIMEOUTS__LEASE"
    assert env_variable("runners.serve.worker-name") == "DASK_RUNNERS__SERVE__WORKER_NAME"


# -- one scheme of environment variables; the old names still work, with a warning -------------


def test_an_old_variable_name_still_counts_and_warns_once_naming_the_new_one(monkeypatch):
    monkeypatch.setattr(config, "_warned", set())
    env = {"DASK_RUNNERS_NTHREADS": "5"}
    with pytest.warns(FutureWarning, match=r"^DASK_RUNNERS_NTHREADS is deprecated.*set DASK_RUNNERS__SERVE__NTHREADS"):
        assert config_value("runners.serve.nthreads", env) == "5"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert config_value("runners.serve.nthreads", env) == "5"  # once per process
        with dask.config.set({"runners.serve.nthreads": 7}):
            # the new name wins when both are set; dask has read it into its config
            assert config_value("runners.serve.nthreads", {**env, "DASK_RUNNERS__SERVE__NTHREADS": "7"}) == 7
            assert config_value("runners.serve.nthreads", {}) == 7
        assert config_value("runners.serve.nthreads", {"DASK_RUNNERS_NTHREADS": ""}) is None


def test_every_old_name_is_single_underscore_and_its_key_is_nested():
    for old, key in RENAMED_VARIABLES.items():
        assert re.fullmatch(r"DASK_RUNNERS_[A-Z][A-Z_]*", old) and "__" not in old, old
        assert env_variable(key).startswith("DASK_RUNNERS__"), key


def test_the_command_line_reads_the_new_and_the_old_variables_through_the_config():
    code = """\
from dask_runners.cli import main
serve = main.commands["serve"].make_context("serve", []).params
launch = main.commands["launch"].make_context("launch", ["x.py"]).params
print(serve["nthreads"], serve["worker_options"], serve["dashboard"], serve["name"], launch["n_ranks"])
"""
    result = python(code, DASK_RUNNERS__SERVE__NTHREADS="6", DASK_RUNNERS__SERVE__WORKER_OPTIONS='{"a": 1}',
                    DASK_RUNNERS__SERVE__DASHBOARD="false", DASK_RUNNERS__LAUNCH__RANKS="2")
    assert result.stdout.split() == ["6", "{'a':", "1}", "False", "None", "2"], result.stderr
    assert "Warning" not in result.stderr
    result = python(code, DASK_RUNNERS_NTHREADS="5", DASK_RUNNERS_WORKER_NAME="w", DASK_RUNNERS_RANKS="3",
                    DASK_RUNNERS_DASHBOARD="false")
    assert result.stdout.split() == ["5", "None", "False", "w", "3"], result.stderr
    warned = [line for line in result.stderr.splitlines() if "FutureWarning" in line]
    assert len(warned) == 4 and all("is deprecated" in line for line in warned), result.stderr
    assert "DASK_RUNNERS__LAUNCH__RANKS" in result.stderr


def test_stop_takes_the_scheduler_file_from_the_config_or_asks_for_it(tmp_path):
    from click.testing import CliRunner

    from dask_runners.cli import main

    result = CliRunner().invoke(main, ["stop"])
    assert result.exit_code == 2 and "Missing option '--scheduler-file'" in result.output
    with dask.config.set({"runners.serve.scheduler-file": str(tmp_path / "gone.json")}):
        result = CliRunner().invoke(main, ["stop", "--timeout", "1"])
    assert result.exit_code == 1 and f"no scheduler file at {tmp_path / 'gone.json'}" in result.output


def test_every_path_option_expands_home_and_environment_variables(monkeypatch, tmp_path):
    from pathlib import Path

    from dask_runners.config import user_path
    from dask_runners.shards import ShardWriter

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SCRATCH", str(tmp_path / "scratch"))
    assert user_path("~/jobs/{job_id}.json") == tmp_path / "home" / "jobs" / "{job_id}.json"
    assert user_path(Path("$SCRATCH/out")) == tmp_path / "scratch" / "out"
    assert ShardWriter("$SCRATCH/results").directory == tmp_path / "scratch" / "results"
    assert (tmp_path / "scratch" / "results").is_dir()
