"""A worker process of a join storm (``bench/join_storm.py`` starts several).

It hosts ``--count`` workers of ranks ``--first-rank`` onwards on its one
event loop. It says ``ready`` once it has imported everything; at the
driver's ``go`` every one of its workers joins at once, and it says
``joined`` with the time and CPU that took. Its workers then leave as their
kind leaves: ours at the scheduler's stop order, the bare kinds at the
driver's ``close``. It says ``left`` and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

import dask.config

from join_storm_process import (
    QUIET_WORKERS,
    cpu_seconds,
    driver_words,
    load_credentials,
    peak_memory_mb,
    quiet_logging,
    raise_open_file_limit,
    send,
    wait_for_word,
)


async def main(args) -> int:
    from dask_runners.config import Timeouts
    from join_storm import KIND_BY_NAME, join, leave

    raise_open_file_limit()
    quiet_logging()
    os.nice(args.nice)
    dask.config.set(QUIET_WORKERS)
    kind = KIND_BY_NAME[args.kind]
    credentials = load_credentials(args.credentials)
    timeouts = Timeouts(shutdown=args.shutdown)
    ranks = range(args.first_rank, args.first_rank + args.count)
    words = await driver_words()
    send("ready")
    await wait_for_word(words, "go")
    cpu_start, start = cpu_seconds(), time.perf_counter()
    outcomes = await asyncio.gather(
        *(join(kind, args.address, rank, credentials, timeouts) for rank in ranks), return_exceptions=True
    )
    joined = [o for o in outcomes if not isinstance(o, BaseException)]
    failures = [repr(o) for o in outcomes if isinstance(o, BaseException)]
    send("joined", seconds=time.perf_counter() - start, cpu_s=cpu_seconds() - cpu_start,
         failed=len(failures), errors=failures[:3], memory_mb=peak_memory_mb())
    if not kind.ours:
        await wait_for_word(words, "close")
    leaving = time.perf_counter()
    await asyncio.gather(*(leave(kind, j, timeouts) for j in joined))
    send("left", seconds=time.perf_counter() - leaving)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", required=True)
    parser.add_argument("--address", required=True)
    parser.add_argument("--first-rank", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--credentials")
    parser.add_argument("--nice", type=int, default=0)
    parser.add_argument("--shutdown", type=float, required=True)
    sys.exit(asyncio.run(main(parser.parse_args())))
