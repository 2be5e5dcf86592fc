"""``uniformer report <table>``."""
from ..tables.command import add_report_arguments as add_arguments, run_report as run  # noqa: F401
