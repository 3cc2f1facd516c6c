"""``dingdee-extractor`` / ``python -m dingdee_extractor``: run the extractor service.

It takes no arguments: its settings come from the ``DINGDEE_*`` environment (README). A flow's
history is read by the operator CLI, ``dingdee backfill`` (the service image carries no CLI
library).
"""

from __future__ import annotations

import asyncio
import sys

from dingdee_extractor.runner import run

__all__ = ["main"]

USAGE = """usage: dingdee-extractor

Run the extractor until SIGTERM/SIGINT: DingTalk approvals (events + polling) → Kafka
approvals.raw. Settings come from the DINGDEE_* environment. Exit codes: 0 on a clean stop,
1 fatal, 2 bad configuration or arguments. To read a flow's history: dingdee backfill --help.
"""


def main(argv: list[str] | None = None) -> int:
    """Run the extractor until SIGTERM/SIGINT; 0 on a clean stop, 1 fatal, 2 bad config."""
    args = sys.argv[1:] if argv is None else argv
    if args in (["--help"], ["-h"]):
        print(USAGE, end="")
        return 0
    if args:
        print(f"{USAGE}\ndingdee-extractor: takes no arguments, got {args!r}", file=sys.stderr)
        return 2
    return asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())
