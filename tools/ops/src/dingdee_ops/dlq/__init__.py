"""Dead-letter inspection and replay (DESIGN §6): the engine behind ``dingdee dlq``."""

from dingdee_ops.dlq.records import DeadLetter, Selection, parse_time
from dingdee_ops.dlq.replay import Action, ReplayEngine, ReplayOptions, ReplayReport

__all__ = [
    "Action",
    "DeadLetter",
    "ReplayEngine",
    "ReplayOptions",
    "ReplayReport",
    "Selection",
    "parse_time",
]
