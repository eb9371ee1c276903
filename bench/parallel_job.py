"""The job that bench/parallel.py launches: parallel_for against client.map and dask.bag on one cluster.

Every worker has one thread. The client rank runs each measurement ``--repeat`` times,
alternating the three, and prints one ``PARALLEL {json}`` line per run.
"""

import argparse
import json
import time

import dask.bag
from dask.distributed import Client

from dask_runners import Runner, parallel_for


def item(index, delay=0.0, **env):
    if delay:
        time.sleep(delay)
    return index * 2


def with_map(client, n_items, delay):
    futures = client.map(item, range(n_items), delay=delay, pure=False)
    return client.gather(futures)


def with_bag(client, n_items, delay):
    return dask.bag.from_sequence(range(n_items), npartitions=64).map(item, delay=delay).compute()


def with_parallel_for(client, n_items, delay):
    return list(parallel_for(lambda index: item(index, delay), range(n_items), client=client))


IMPLEMENTATIONS = [("client.map", with_map), ("dask.bag", with_bag), ("parallel_for", with_parallel_for)]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, required=True)
    parser.add_argument("--item-ms", type=float, required=True)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    delay = args.item_ms / 1000
    with Runner(worker_options={"nthreads": 1}) as runner:
        with Client(runner) as client:
            client.wait_for_workers(runner.n_workers)
            with_map(client, 2 * runner.n_workers, 0)  # warm the workers up
            for repeat in range(args.repeat):
                for name, run in IMPLEMENTATIONS:
                    start = time.perf_counter()
                    results = run(client, args.items, delay)
                    seconds = time.perf_counter() - start
                    assert list(results) == [2 * i for i in range(args.items)]
                    record = {
                        "impl": name, "workers": runner.n_workers, "items": args.items,
                        "item_ms": args.item_ms, "repeat": repeat, "seconds": seconds,
                    }
                    print("PARALLEL", json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
