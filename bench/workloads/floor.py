"""The floor: what the launcher, Python and `import distributed` cost alone.

``ready`` is when this rank could begin any Dask work: no first result can
come before the last rank's (every rank must run a worker, or the client).
"""

import _bench  # noqa: F401  (first: stamps the process start)
import distributed  # noqa: F401

_bench.ready()
