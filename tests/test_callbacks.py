import asyncio

import pytest
from distributed import Client

from dask_runners import JobContext
from dask_runners.callbacks import call_with_job, emit, outcome
from dask_runners.inprocess import InProcessRunner, InProcessWorld, RankExited

JOB = JobContext("slurm", job_id="7", rank=1, world_size=4)


def test_the_job_goes_to_a_parameter_named_job_or_annotated_jobcontext():
    assert call_with_job(lambda job: job, JOB) is JOB

    def annotated(context: JobContext, status):
        return context, status

    assert call_with_job(annotated, JOB, status="ok", error=None) == (JOB, "ok")
    assert call_with_job(lambda: "no arguments", JOB, status="ok") == "no arguments"
    assert call_with_job(lambda **kw: sorted(kw), JOB, status="ok") == ["job", "status"]


def test_a_failing_callback_is_logged_and_the_others_still_run(caplog):
    seen = []

    class Broken:
        def on_end(self):
            raise RuntimeError("callback bug")

    class Recording:
        def on_end(self, job, status):
            seen.append((job.rank, status))

    emit([Broken(), Recording(), object()], "on_end", JOB, status="failed", error="x")
    assert seen == [(1, "failed")]
    assert "callback bug" in caplog.text


@pytest.mark.parametrize(
    "exc, expected",
    [
        (None, ("succeeded", None)),
        (SystemExit(0), ("succeeded", None)),
        (ValueError("boom"), ("failed", "ValueError: boom")),
        (KeyboardInterrupt(), ("interrupted", "KeyboardInterrupt: ")),
    ],
)
def test_outcome(exc, expected):
    assert outcome(exc) == expected


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_every_rank_reports_its_lifecycle_with_the_same_job():
    events = []

    class Recorder:
        def __getattr__(self, event):
            if not event.startswith("on_"):
                raise AttributeError(event)

            def record(job, **details):
                events.append((job.rank, event, details.get("status"), details.get("exit_code")))

            return record

    world = InProcessWorld(3)

    async def rank_main(rank):
        try:
            async with InProcessRunner(
                world, rank, callbacks=[Recorder()], scheduler_options={"dashboard": False}
            ) as runner:
                async with Client(runner, asynchronous=True) as client:
                    await client.wait_for_workers(1)
                raise ValueError("the body fails")
        except (RankExited, ValueError):
            pass

    await asyncio.wait_for(asyncio.gather(*(rank_main(r) for r in range(3))), 30)
    assert [e for e in events if e[0] == 1] == [
        (1, "on_begin", None, None),
        (1, "on_end", "failed", None),
        (1, "on_completed", "failed", None),
    ]
    assert [e for e in events if e[0] == 0] == [(0, "on_scheduler_start", None, None), (0, "on_scheduler_stop", None, 1)]
    assert [e for e in events if e[0] == 2] == [(2, "on_worker_start", None, None), (2, "on_worker_stop", None, 1)]
