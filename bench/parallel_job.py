"""The job that bench/parallel.py launches: parallel_for against client.map on one cluster.

Every worker has one thread. The client rank runs each measurement ``--repeat`` times,
alternating the two, and prints one ``PARALLEL {json}`` line per run.
"""

import argparse
import json
import time

from dask.distributed import Client

from dask_runners import Runner, parallel_for


def item(index, delay=0.0, **env):
    if delay:
        time.sleep(delay)
    return index


def with_map(client, n_items, delay):
    futures = client.map(item, range(n_items), delay=delay, pure=False)
    return client.gather(futures)


def with_parallel_for(client, n_items, delay):
    return list(parallel_for(lambda index: item(index, delay), range(n_items), client=client))


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
                for name, run in [("client.map", with_map), ("parallel_for", with_parallel_for)]:
                    start = time.perf_counter()
                    results = run(client, args.items, delay)
                    seconds = time.perf_counter() - start
                    assert results == list(range(args.items))
                    record = {
                        "impl": name, "workers": runner.n_workers, "items": args.items,
                        "item_ms": args.item_ms, "repeat": repeat, "seconds": seconds,
                    }
                    print("PARALLEL", json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
