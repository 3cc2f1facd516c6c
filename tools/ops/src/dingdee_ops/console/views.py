"""The read-only pages: flows, where-is-my-approval, try-a-mapping."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from dingdee_common import codec
from dingdee_common.contracts.v1 import ApprovalSnapshot
from dingdee_ops.cli.mapping import snapshot_from_json
from dingdee_ops.console.journal import Journal, StageCounts
from dingdee_ops.console.picture import FieldView, FlowPicture
from dingdee_ops.console.render import Renderer
from dingdee_ops.console.state import ConsoleState
from dingdee_transformer.mapping import LinkedChangeError, MappingError, Skip, map_snapshot

__all__ = ["Pages"]

RECENT = 10
STAGE_LABELS = (
    ("抽取 extracted", "extracted"),
    ("映射 mapped", "mapped"),
    ("入金蝶 loaded", "loaded"),
    ("金蝶拒绝 failed", "failed"),
    ("死信 dead-lettered", "dead_lettered"),
    ("停放 parked", "parked"),
    ("等待主数据 waiting for master data", "waiting"),
)


@dataclass(frozen=True)
class BillRow:
    """One line of a previewed bill: the Kingdee field, its value and where it came from."""

    target: str
    depth: int
    value: str
    source: str
    given: str


def _counts(journal: Journal | None, flow: str, hours: float) -> dict[str, Any]:
    counts = journal.counts(flow, hours) if journal is not None else StageCounts()
    return {key: getattr(counts, key) if journal is not None else "?" for _, key in STAGE_LABELS}


def _given(view: FieldView, snapshot: ApprovalSnapshot) -> str:
    """The DingTalk value a head field reads (a component's value or an approval attribute)."""
    if view.kind == "attr":
        return str(snapshot.instance.get(view.source, ""))
    if view.kind != "component":
        return ""
    for comp in snapshot.instance.get("form_component_values") or []:
        if isinstance(comp, dict) and view.source in (comp.get("name"), comp.get("id")):
            return str(comp.get("value", ""))
    return ""


def bill_rows(pic: FlowPicture, model: dict[str, Any], snapshot: ApprovalSnapshot) -> list[BillRow]:
    """The bill's fields in the picture's order, each beside its source."""
    rows: list[BillRow] = []
    for view in pic.fields:
        if view.depth:
            continue
        source = f"{view.kind_label}: {view.source}"
        value = model.get(view.target)
        if view.kind == "rows" and isinstance(value, list):
            rows.append(BillRow(view.target, 0, f"{len(value)} rows", source, ""))
            for i, entry in enumerate(value):
                for sub in (f for f in pic.fields if f.target.startswith(view.target + ".")):
                    key = sub.target.split(".", 1)[1]
                    shown = codec.dumps(entry.get(key)).decode() if isinstance(entry, dict) else ""
                    rows.append(
                        BillRow(f"{view.target}[{i}].{key}", 1, shown,
                                f"{sub.kind_label}: {sub.source}", "")
                    )  # fmt: skip
            continue
        shown = codec.dumps(value).decode() if view.target in model else "(omitted)"
        rows.append(BillRow(view.target, 0, shown, source, _given(view, snapshot)))
    return rows


class Pages:
    """Handlers of the read-only pages."""

    def __init__(self, state: ConsoleState, render: Renderer) -> None:
        self.state = state
        self.render = render

    async def flows(self, request: web.Request) -> web.Response:
        journal = self.state.journal
        flows = [
            {
                "picture": pic,
                "hour": _counts(journal, fid, 1),
                "day": _counts(journal, fid, 24),
                "fresh": journal.freshness(fid) if journal is not None else {},
            }
            for fid, pic in self.state.pictures.items()
        ]
        return self.render.page(
            request,
            "flows.html",
            nav="flows",
            flows=flows,
            stage_labels=STAGE_LABELS,
            services=self.state.services,
            reports=self.state.reports(),
        )

    async def approvals(self, request: web.Request) -> web.Response:
        query = request.query.get("q", "").strip()[:200]
        journal = self.state.journal
        journeys = journal.search(query) if journal is not None and query else []
        return self.render.page(
            request,
            "approvals.html",
            nav="approvals",
            q=query,
            journeys=journeys,
            window_hours=self.state.config.window_hours,
            trace_url=self.state.config.trace_url,
        )

    def _picked(self, request: web.Request) -> tuple[str, str]:
        """The flow and approval JSON of ``?from=`` (approvals.raw) or ``?letter=`` (a DLQ)."""
        journal = self.state.journal
        flow = request.query.get("flow", next(iter(self.state.flows), ""))
        if journal is None:
            return flow, ""
        if "from" in request.query and (snap := journal.snap_at(request.query["from"])):
            text = codec.dumps(snap.snapshot.model_dump(mode="json"), indent=True).decode()
            return snap.snapshot.flow, text
        topic, _, rest = request.query.get("letter", "").partition("/")
        partition, _, offset = rest.partition("/")
        if partition.isdigit() and offset.isdigit():
            letter = journal.letter(topic, int(partition), int(offset))
            if letter is not None and letter.value is not None:
                text = letter.value.decode("utf-8", errors="replace")
                return (letter.flow if letter.flow in self.state.flows else flow), text
        return flow, ""

    async def try_form(self, request: web.Request) -> web.Response:
        flow, text = self._picked(request)
        return self._try_page(request, flow, text, {})

    def _recent(self) -> dict[str, Any]:
        """The latest approvals and transformer dead letters to pick from."""
        journal = self.state.journal
        if journal is None:
            return {"recent": [], "recent_letters": []}
        letters = [d for d in journal.letters if d.stage != "loader"]
        return {"recent": journal.snaps[-RECENT:][::-1], "recent_letters": letters[-RECENT:][::-1]}

    async def try_post(self, request: web.Request) -> web.Response:
        form = await request.post()
        flow, text = str(form.get("flow", "")), str(form.get("instance", ""))
        return self._try_page(request, flow, text, self._preview(flow, text))

    def _preview(self, flow_id: str, text: str) -> dict[str, Any]:
        """What ``dingdee mapping preview`` says, as page context."""
        flow = self.state.flows.get(flow_id)
        if flow is None:
            return {"problem": f"no flow {flow_id!r}"}
        try:  # numbers as Decimals, as the preview command reads them
            snapshot = snapshot_from_json(codec.loads(text.encode(), exact=True), flow)
        except (ValueError, ValidationError) as exc:
            return {"problem": f"cannot read the approval: {exc}"}
        try:
            result = map_snapshot(flow, snapshot)
        except MappingError as exc:
            return {"errors": exc.errors}
        except LinkedChangeError as exc:
            return {"problem": f"dead letter: {exc.message}"}
        if isinstance(result, Skip):
            return {"skip": result.reason}
        request = {"formid": result.form_id, "data": {**result.save_options, "Model": result.model}}
        return {
            "bill": result,
            "rows": bill_rows(self.state.pictures[flow_id], result.model, snapshot),
            "save_request": codec.dumps(request, indent=True).decode(),
        }

    def _try_page(
        self, request: web.Request, flow: str, text: str, outcome: dict[str, Any]
    ) -> web.Response:
        context: dict[str, Any] = {"problem": None, "skip": None, "errors": None, "bill": None}
        context.update(outcome)
        return self.render.page(
            request,
            "try.html",
            nav="try",
            flow_ids=list(self.state.flows),
            flow=flow,
            text=text,
            rows=context.pop("rows", []),
            save_request=context.pop("save_request", ""),
            **self._recent(),
            **context,
        )
