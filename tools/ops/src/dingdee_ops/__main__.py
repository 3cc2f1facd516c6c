"""``python -m dingdee_ops``: the operator CLI, as the ``dingdee`` command."""

from dingdee_ops.cli.main import app

app(prog_name="dingdee")
