"""Batch inference with a model built once per worker, never pickled per task.

Each worker builds the environment (a dataset and a small model) from a setup
function when it starts; ``parallel_for`` then sends only item indices, and
``classify`` reads the model and the dataset from the worker's environment.
The model is a logistic regression trained with numpy on generated data, so
the example needs nothing downloaded at run time.

    python examples/batch_inference.py --local            # in this process, no cluster
    dask-runner launch -n 4 examples/batch_inference.py   # 2 workers on this machine
    srun -n 10 python examples/batch_inference.py         # 8 workers under Slurm

Options: ``--items N`` (default 2000), ``--item-ms MS`` (extra time per item,
to stand in for a heavier model), ``--output DIR`` (JSONL shards).
"""

import argparse
import time

import numpy as np

from dask_runners import Runner, parallel_for

FEATURES = 16


def make_dataset(n_items: int, seed: int = 0):
    """Two Gaussian classes in FEATURES dimensions: (inputs, labels)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n_items)
    centres = np.where(labels[:, None] == 1, 0.6, -0.6)
    inputs = centres + rng.normal(size=(n_items, FEATURES))
    return inputs, labels


def train(inputs, labels, steps: int = 300, rate: float = 0.5):
    """Logistic regression by gradient descent: (weights, bias)."""
    weights, bias = np.zeros(inputs.shape[1]), 0.0
    for _ in range(steps):
        predicted = 1 / (1 + np.exp(-(inputs @ weights + bias)))
        error = predicted - labels
        weights -= rate * inputs.T @ error / len(labels)
        bias -= rate * error.mean()
    return weights, bias


def make_setup(n_items: int):
    """A setup function that captures only a number, not the data or the model."""

    def setup():
        train_inputs, train_labels = make_dataset(1000, seed=1)
        return {"model": train(train_inputs, train_labels), "dataset": make_dataset(n_items)}

    return setup


def classify(index: int, *, model, dataset, item_ms: float = 0.0):
    """Predict one item of the dataset: (probability of class 1, true label)."""
    weights, bias = model
    inputs, labels = dataset
    if item_ms:
        time.sleep(item_ms / 1000)
    probability = 1 / (1 + np.exp(-(inputs[index] @ weights + bias)))
    return float(probability), int(labels[index])


def report(results, seconds: float, where: str) -> None:
    correct = sum((probability > 0.5) == label for probability, label in results)
    print(
        f"classified {len(results)} items in {seconds:.2f} s on {where}: "
        f"accuracy {correct / len(results):.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--item-ms", type=float, default=0.0)
    parser.add_argument("--output", default=None, help="write JSONL shards here")
    parser.add_argument("--local", action="store_true", help="run in this process, no cluster")
    args = parser.parse_args()
    setup = make_setup(args.items)

    def run(where):
        start = time.perf_counter()
        results = list(
            parallel_for(
                lambda index, **env: classify(index, item_ms=args.item_ms, **env),
                range(args.items),
                setup=setup if where == "this process" else None,
                output_dir=args.output,
            )
        )
        report(results, time.perf_counter() - start, where)

    if args.local:
        run("this process")
        return

    from dask.distributed import Client

    with Runner(worker_setup=setup) as runner:
        with Client(runner) as client:
            client.wait_for_workers(runner.n_workers)
            run(f"{runner.n_workers} workers ({runner.job.launcher})")


if __name__ == "__main__":
    main()
