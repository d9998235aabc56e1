"""Thin Prefect tasks over the `hybrid` library: paths and small dicts in and out.

Prefect runs task bodies in worker threads. Two tasks importing the same package at the same
time can see it half-initialised (ImportError "partially initialized module"), so the
library's packages are imported here, once, when a flow module imports `tasks`.
"""

import hybrid.data  # noqa: F401
import hybrid.encoder  # noqa: F401
import hybrid.evaluation  # noqa: F401
import hybrid.train  # noqa: F401
