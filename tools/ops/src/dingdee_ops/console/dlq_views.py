"""Dead letters: list and filter, inspect one, and replay a selection (dry run, then confirm)
with the same :class:`ReplayEngine` and audit topic as ``dingdee dlq replay``."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from dingdee_common.errors import FatalError
from dingdee_common.kafka.topics import STAGES
from dingdee_ops.console.render import Renderer
from dingdee_ops.console.security import identity
from dingdee_ops.console.state import ConsoleState
from dingdee_ops.dlq import ReplayEngine, ReplayOptions, ReplayReport, Selection, parse_time
from dingdee_ops.dlq.records import DeadLetter
from dingdee_ops.dlq.replay import Action

__all__ = ["DeadLetters"]

CLASSES = ("permanent", "poison", "exhausted")
FILTERS = (
    "stage",
    "flow",
    "error_class",
    "error_type",
    "key",
    "pattern",
    "since",
    "until",
    "state",
)
MAX_PICKS = 500


@dataclass(frozen=True)
class StageReport:
    stage: str
    report: ReplayReport


def _selection(f: dict[str, str]) -> Selection:
    """The list page's filters as the CLI's :class:`Selection`.

    Raises:
        ValueError: an unknown stage, a time that is not ISO 8601 or a bad pattern.
    """

    def one(name: str) -> frozenset[str]:
        return frozenset({f[name]}) if f.get(name) else frozenset()

    return Selection(
        stages=(f["stage"],) if f.get("stage") else STAGES,
        since=parse_time(f["since"]) if f.get("since") else None,
        until=parse_time(f["until"]) if f.get("until") else None,
        error_classes=one("error_class"),
        error_types=one("error_type"),
        flows=one("flow"),
        keys=one("key"),
        pattern=f.get("pattern") or None,
    )


def _picks(values: list[str]) -> dict[str, set[int]]:
    """``stage:partition:offset`` form values → offsets per stage (DLQ topics have 1 partition).

    Raises:
        web.HTTPBadRequest: a value that is not a pick, or too many.
    """
    if not values or len(values) > MAX_PICKS:
        raise web.HTTPBadRequest(text=f"select 1 to {MAX_PICKS} dead letters")
    out: dict[str, set[int]] = defaultdict(set)
    for value in values:
        stage, _, rest = value.partition(":")
        partition, _, offset = rest.partition(":")
        if stage not in STAGES or partition != "0" or not offset.isdigit():
            raise web.HTTPBadRequest(text="bad selection")
        out[stage].add(int(offset))
    return out


def _pretty(value: bytes | None) -> str:
    if value is None:
        return "(null)"
    try:
        return orjson.dumps(orjson.loads(value), option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONDecodeError:
        return value.decode("utf-8", errors="replace")


class DeadLetters:
    """Handlers of ``/dlq``."""

    def __init__(self, state: ConsoleState, render: Renderer) -> None:
        self.state = state
        self.render = render
        self.engine = ReplayEngine(state.settings.kafka, state.topics)

    async def list(self, request: web.Request) -> web.Response:
        f = {name: request.query.get(name, "").strip()[:200] for name in FILTERS}
        f["state"] = f["state"] or "pending"
        journal = self.state.journal
        letters: list[DeadLetter] = []
        problem = None
        try:
            selection = _selection(f)
        except ValueError as exc:
            problem = str(exc)
        else:
            if journal is not None:
                letters = [
                    d
                    for d in journal.letters
                    if selection.matches(d) and (f["state"] == "all" or journal.pending(d))
                ]
        letters.sort(key=lambda d: d.failed_at, reverse=True)
        return self.render.page(
            request,
            "dlq.html",
            nav="dlq",
            f=f,
            stages=STAGES,
            classes=CLASSES,
            letters=letters,
            problem=problem,
            pending=journal.pending if journal is not None else (lambda _d: True),
        )

    async def inspect(self, request: web.Request) -> web.Response:
        journal = self.state.journal
        topic = request.match_info["topic"]
        try:
            partition = int(request.match_info["partition"])
            offset = int(request.match_info["offset"])
        except ValueError as exc:
            raise web.HTTPNotFound from exc
        letter = journal.letter(topic, partition, offset) if journal is not None else None
        if letter is None:
            raise web.HTTPNotFound(text="no such dead letter (yet); the page refreshes every few s")
        headers = [(k, v.decode("utf-8", errors="replace")) for k, v in letter.headers]
        return self.render.page(
            request,
            "letter.html",
            nav="dlq",
            d=letter,
            pending=journal is not None and journal.pending(letter),
            headers=headers,
            value=_pretty(letter.value),
            size=len(letter.value or b""),
        )

    async def replay(self, request: web.Request) -> web.Response:
        """Operators only (the guard says so): a dry run, or with ``confirm=yes`` the replay."""
        form = await request.post()
        picks = [str(v) for v in form.getall("pick", [])]
        by_stage = _picks(picks)
        dry_run = form.get("confirm") != "yes"
        who = identity(request).user
        reports: list[StageReport] = []
        for stage, offsets in sorted(by_stage.items()):
            options = ReplayOptions(
                selection=Selection(stages=(stage,), offsets=frozenset(offsets)),
                dry_run=dry_run,
                who=who,
                sample_size=MAX_PICKS,
            )
            self.state.metrics.replays.labels("dry_run" if dry_run else "execute").inc()
            try:
                reports.append(StageReport(stage, await self.engine.run(options)))
            except FatalError as exc:
                raise web.HTTPServiceUnavailable(text=f"Kafka: {exc}") from exc
        if not dry_run:
            self.state.wake()
        replayable = any(
            r.report.planned.get(Action.REPLAY, 0) + r.report.planned.get(Action.PARK, 0)
            for r in reports
        )
        context: dict[str, Any] = {"reports": reports, "dry_run": dry_run, "picks": picks}
        return self.render.page(request, "replay.html", nav="dlq", replayable=replayable, **context)
