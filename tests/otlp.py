"""A small OTLP/HTTP trace collector on 127.0.0.1: what the services export, decoded."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from aiohttp import web
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from dingdee_common.web import start_site

__all__ = ["Collected", "start_collector"]


@dataclass
class Collected:
    """Spans received per trace id: (service, span name, kind, span id, parent id, links)."""

    spans: list[dict[str, object]] = field(default_factory=list)

    def by_trace(self) -> dict[str, list[dict[str, object]]]:
        traces: dict[str, list[dict[str, object]]] = defaultdict(list)
        for span in self.spans:
            traces[str(span["trace_id"])].append(span)
        return traces


async def start_collector(collected: Collected) -> tuple[web.AppRunner, int]:
    async def export(request: web.Request) -> web.Response:
        message = trace_service_pb2.ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        for resource_spans in message.resource_spans:
            attrs = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    collected.spans.append(
                        {
                            "service": attrs.get("service.name", ""),
                            "name": span.name,
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent": span.parent_span_id.hex(),
                            "links": [link.trace_id.hex() for link in span.links],
                            "attributes": {
                                a.key: a.value.string_value or str(a.value.int_value)
                                for a in span.attributes
                            },
                        }
                    )
        body = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=body, content_type="application/x-protobuf")

    app = web.Application(client_max_size=64 << 20)
    app.router.add_post("/v1/traces", export)
    runner, port = await start_site(app)
    return runner, port
