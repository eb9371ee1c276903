"""Batch inference over 100 000 items that survives preemption and the time limit.

Every worker builds a small numpy model once (``worker_setup``); ``parallel_for``
writes each prediction to JSON Lines shards in ``--output``. When the job is
told to stop (the preemption signal, here ``SIGUSR1``), the map stops
submitting, keeps what finishes within ``runners.parallel.grace`` seconds, and
the job exits with code 75. Run again with the same ``--output``, it computes
only the items that have no prediction yet. After any number of stops, the
shards hold every item exactly once.

Submit it with a job script that asks Slurm for the warning signal, passes it
to ``srun``, and requeues the job when it stopped early::

    #!/bin/bash
    #SBATCH --ntasks=10 --time=01:00:00
    #SBATCH --requeue --signal=B:USR1@60
    srun python examples/resumable_inference.py --output "$HOME/predictions" &
    pid=$!
    trap 'kill -USR1 $pid' USR1   # B:USR1 reaches this shell only; srun passes it on
    wait $pid; status=$?
    if [ "$status" -gt 128 ]; then wait $pid; status=$?; fi   # the trap ran: wait for srun
    if [ "$status" -eq 75 ]; then scontrol requeue "$SLURM_JOB_ID"; fi
    exit "$status"

A job requeued by Slurm itself (preemption with ``PreemptMode=REQUEUE``) resumes
the same way. To try it on one machine::

    dask-runner launch -n 4 examples/resumable_inference.py --output /tmp/predictions
    python examples/resumable_inference.py --summary /tmp/predictions

Options: ``--items N`` (default 100 000), ``--item-ms MS`` (extra time per item,
standing in for a heavier model).
"""

import argparse
import json
import signal
import time

import numpy as np
from dask.distributed import Client

from dask_runners import Runner, parallel_for, stop_maps
from dask_runners.shards import read_shards

FEATURES = 16


def setup():
    """The per-worker environment: a logistic-regression model, trained here with numpy."""
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 2000)
    inputs = np.where(labels[:, None] == 1, 0.6, -0.6) + rng.normal(size=(2000, FEATURES))
    weights, bias = np.zeros(FEATURES), 0.0
    for _ in range(200):
        error = 1 / (1 + np.exp(-(inputs @ weights + bias))) - labels
        weights -= 0.5 * inputs.T @ error / len(labels)
        bias -= 0.5 * error.mean()
    return {"weights": weights, "bias": bias}


def predict(index: int, *, weights, bias, item_ms: float = 0.0):
    """The probability of class 1 for item ``index`` (its features are generated from the index)."""
    features = np.random.default_rng(index).normal(size=FEATURES)
    if item_ms:
        time.sleep(item_ms / 1000)
    return round(float(1 / (1 + np.exp(-(features @ weights + bias)))), 6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--item-ms", type=float, default=0.0)
    parser.add_argument("--output", help="the shards' directory")
    parser.add_argument("--summary", metavar="DIR", help="only count the predictions in DIR")
    args = parser.parse_args()
    if args.summary:
        indices = [record["index"] for record in read_shards(args.summary)]
        print(json.dumps({"predictions": len(indices), "distinct": len(set(indices))}))
        return

    item_ms = args.item_ms
    with Runner(worker_setup=setup, preemption_signal=signal.SIGUSR1, on_preemption=stop_maps) as runner:
        with Client(runner) as client:
            client.wait_for_workers(runner.n_workers)
            start = time.perf_counter()
            predictions = parallel_for(
                lambda index, **model: predict(index, item_ms=item_ms, **model),
                range(args.items), output_dir=args.output, shard_size=5000, ordered=False,
            )
            computed = sum(1 for _ in predictions)
            print(f"predicted {computed} items in {time.perf_counter() - start:.1f} s "
                  f"({predictions.skipped} were already done)", flush=True)


if __name__ == "__main__":
    main()
