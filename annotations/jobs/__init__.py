"""Job functions of the annotations app, a module per concern (crowd jobs live with crowd, in crowd/jobs.py).

Importing this package registers them all, which is how ``evalsite.jobs.registered_jobs`` finds them.
"""

from annotations.crowd import jobs as crowd  # noqa: F401
from annotations.jobs import analysis, explanations, studies  # noqa: F401
