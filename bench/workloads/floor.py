"""The floor: what the launcher, Python and `import distributed` cost alone."""

import _bench  # noqa: F401  (first: stamps the process start)
import distributed  # noqa: F401
