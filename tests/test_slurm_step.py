import pytest

from dask_runners import LauncherEnvironmentError, SLURMRunner, WorldTooSmallError

SRUN_TASK = {
    "SLURM_JOB_ID": "77",
    "SLURM_STEP_ID": "3",
    "SLURM_PROCID": "2",
    "SLURM_NTASKS": "4",
    "SLURM_STEP_NUM_TASKS": "4",
    "SLURM_LOCALID": "2",
    "SLURM_NODELIST": "vm",
}


def test_step_from_srun_environment():
    runner = SLURMRunner(environ=SRUN_TASK)
    job = runner.job
    assert (job.job_id, job.step_id, job.rank, job.world_size) == ("77", "3", 2, 4)
    assert (runner.rank, runner.world_size, runner.n_workers) == (2, 4, 2)
    assert runner.stamp == {"launcher": "slurm", "job_id": "77", "step_id": "3", "restart_count": 0}


def test_requeued_job_has_another_stamp():
    first = SLURMRunner(environ=SRUN_TASK)
    requeued = SLURMRunner(environ={**SRUN_TASK, "SLURM_RESTART_COUNT": "1"})
    assert first.stamp != requeued.stamp


def test_no_slurm_at_all_says_to_use_srun():
    with pytest.raises(LauncherEnvironmentError, match="srun -n 4 python script.py"):
        SLURMRunner(environ={})


def test_batch_script_without_srun_is_named():
    env = {k: v for k, v in SRUN_TASK.items() if k != "SLURM_STEP_ID"}
    with pytest.raises(LauncherEnvironmentError, match="batch script"):
        SLURMRunner(environ=env)


def test_scheduler_file_is_unique_per_step_and_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = SLURMRunner(environ=SRUN_TASK)
    assert runner.scheduler_file == tmp_path / "scheduler-77.3.json"
    custom = SLURMRunner(environ=SRUN_TASK, scheduler_file="/shared/{job_id}/s-{step_id}.json")
    assert str(custom.scheduler_file) == "/shared/77/s-3.json"


def test_cpus_per_task_bound_the_worker_threads_unless_given():
    from dask_runners.services.worker import WorkerSpec
    from dask_runners.sizing import node_share

    env = {**SRUN_TASK, "SLURM_CPUS_PER_TASK": "8", "SLURM_CPUS_ON_NODE": "32"}
    job = SLURMRunner(environ=env).job
    assert node_share(job, env, affinity=set(range(16)), machine_cpus=64).nthreads == 8
    given = SLURMRunner(environ=env, worker_options={"nthreads": 2})
    spec = WorkerSpec(options=given.worker_options, job=given.job)
    assert spec.make("tls://10.0.0.1:1", 3, None).state.nthreads == 2


def test_caller_options_are_not_mutated():
    options = {"memory_limit": "1GB"}
    SLURMRunner(environ={**SRUN_TASK, "SLURM_CPUS_PER_TASK": "8"}, worker_options=options)
    assert options == {"memory_limit": "1GB"}


@pytest.mark.parametrize("n_tasks, client, ok", [(2, True, False), (3, True, True), (1, False, False), (2, False, True)])
def test_world_size_check(n_tasks, client, ok):
    env = {**SRUN_TASK, "SLURM_PROCID": "0", "SLURM_NTASKS": str(n_tasks), "SLURM_STEP_NUM_TASKS": str(n_tasks)}
    runner = SLURMRunner(environ=env, client=client)
    if ok:
        runner._check_can_start()
    else:
        with pytest.raises(WorldTooSmallError, match=f"SLURM_NTASKS={n_tasks} .* try `srun -n {n_tasks + 1}"):
            runner._check_can_start()


def test_roles_scheduler_first_then_client_then_workers():
    env = dict(SRUN_TASK)
    runner = SLURMRunner(environ=env)
    assert [runner.role_for_rank(r).value for r in range(4)] == ["scheduler", "client", "worker", "worker"]
    batch = SLURMRunner(environ=env, client=False)
    assert [batch.role_for_rank(r).value for r in range(3)] == ["scheduler", "worker", "worker"]
    joining = SLURMRunner(environ=env, scheduler=False)
    assert [joining.role_for_rank(r).value for r in range(3)] == ["client", "worker", "worker"]
