"""``uniformer check``: the regression gate."""
from ..tables.command import add_check_arguments as add_arguments, run_check as run  # noqa: F401
