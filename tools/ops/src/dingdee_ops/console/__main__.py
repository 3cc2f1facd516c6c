"""``python -m dingdee_ops.console``: what ``dingdee console`` and ``make run`` start."""

from dingdee_ops.cli.console import main

main()
