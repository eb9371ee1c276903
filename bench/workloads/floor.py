"""The floor: what the launcher, Python and `import distributed` cost alone.

``ready`` is when this rank could begin any Dask work: no first result can
come before the last rank's (every rank must run a worker, or the client).
Then the rank leaves at once, skipping the interpreter's teardown, so the
time from the last ``ready`` to the launcher's return is the least any job
of this size takes to end. With ``BENCH_CLIENT_EXITS=1`` rank 1 ends as a
script ends (see ``_bench.leave``), as every runner's client rank does.
"""

import _bench  # noqa: F401  (first: stamps the process start)
import distributed  # noqa: F401

_bench.ready()
_bench.leave()
