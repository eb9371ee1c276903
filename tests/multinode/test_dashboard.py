"""The dashboard only its user reaches: on the emulated nodes, from another node's network namespace."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ..launch import launch, write_script
from .test_multinode import ENV, NODE_IP, multinode  # noqa: F401 - the fixture skips without the nodes

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(180)]

#: ci/setup.sh makes it: this environment's packages and the dashboard extra (bokeh).
DASHBOARD_PYTHON = Path("/opt/dask-runners-ci/dashboard-env/bin/python")

SCRIPT = """\
import asyncio, json, socket, urllib.error, urllib.request
from dask.distributed import Client
from dask_runners import SLURMRunner

def fetch(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError as e:
        return type(getattr(e, "reason", e)).__name__

async def fetch_beside(url):  # on the scheduler's event loop, which serves the dashboard
    return await asyncio.to_thread(fetch, url)

with SLURMRunner() as runner:
    with Client(runner) as client:
        client.wait_for_workers(runner.n_workers)
        dashboard = runner.contact.dashboard
        node_ip = {node_ip!r}[dashboard.node]
        report = {{
            "link": runner.dashboard_link,
            "tunnel": dashboard.tunnel,
            "node": dashboard.node,
            "client_node": socket.gethostname(),
            "from_client_node": fetch(f"http://{{node_ip}}:{{dashboard.port}}/status"),
            "on_its_node": client.run_on_scheduler(fetch_beside, f"http://127.0.0.1:{{dashboard.port}}/status"),
            "worker_http": [
                fetch(f"http://{{node_ip_of}}:{{port}}/health")
                for node_ip_of, port in (
                    (info["host"], info["services"]["dashboard"])
                    for info in client.scheduler_info()["workers"].values()
                )
            ],
        }}
        print("REPORT", json.dumps(report), flush=True)
"""


def dashboard_report(job_dir, **env):
    if not DASHBOARD_PYTHON.exists():
        pytest.fail(f"{DASHBOARD_PYTHON} is missing: run ci/setup.sh")
    script = write_script(job_dir, SCRIPT.format(node_ip=NODE_IP))
    argv = ["srun", "-N", "4", "-n", "4", "--ntasks-per-node=1", str(DASHBOARD_PYTHON), str(script)]
    result = launch(argv, job_dir, env={**os.environ, **ENV, **env})
    result.assert_clean_success()
    [line] = [line for line in result.stdout.splitlines() if line.startswith("REPORT ")]
    report = json.loads(line.split(" ", 1)[1])
    assert report["client_node"] != report["node"], report  # the client rank looks from another namespace
    return report


def test_by_default_the_dashboard_answers_on_its_node_only(job_dir):
    report = dashboard_report(job_dir)
    assert report["on_its_node"] == 200, report  # the real dashboard (bokeh), through the tunnel's end
    assert report["from_client_node"] == "ConnectionRefusedError", report
    assert report["worker_http"] == ["ConnectionRefusedError"] * 2, report
    assert report["link"].startswith("http://localhost:") and report["link"].endswith("/status")
    assert report["tunnel"] == f"ssh -L {report['link'].split(':')[2].split('/')[0]}:localhost:" \
        f"{report['link'].split(':')[2].split('/')[0]} {report['node']}"


def test_runners_dashboard_public_opens_it_to_the_network(job_dir):
    report = dashboard_report(job_dir, DASK_RUNNERS__DASHBOARD__PUBLIC="true")
    assert report["from_client_node"] == 200, report
    assert report["worker_http"] == [200, 200], report
    assert report["link"] == f"http://{report['node']}:{report['link'].split(':')[2]}" and report["tunnel"] is None
