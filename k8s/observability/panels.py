"""Grafana building blocks for ``build.py``: a time-series panel, a dashboard with the ``flow``
variable, histogram quantiles; built with Grafana's own ``grafana-foundation-sdk``.

Every panel uses the pinned Prometheus datasource (``dingdee-prometheus``) and is laid out two to
a row, 8 units high; ``F`` is the selector of the dashboards' ``flow`` variable.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import common, dashboard, prometheus, timeseries
from grafana_foundation_sdk.models.common import LegendDisplayMode, LegendPlacement
from grafana_foundation_sdk.models.dashboard import (
    Dashboard,
    DataSourceRef,
    GridPos,
    VariableOption,
    VariableRefresh,
)

DATASOURCE = DataSourceRef(type_val="prometheus", uid="dingdee-prometheus")
F = '{flow=~"$flow"}'


def quantile(q: float, metric: str, by: str = "", selector: str = "") -> str:
    """The ``q`` quantile of histogram ``metric`` (per ``by`` when given)."""
    rate = f"rate({metric}_bucket{selector}[5m])"
    labels = f"{by}, le" if by else "le"
    return f"histogram_quantile({q}, sum by ({labels}) ({rate}))"


def p95(metric: str, by: str = "stage", selector: str = "") -> str:
    """The 95th percentile of histogram ``metric`` per ``by``."""
    return quantile(0.95, metric, by, selector)


Query = tuple[str, str]  # (PromQL, legend)
PanelSpec = tuple[str, list[Query], str]  # (title, queries, unit)


def time_series(
    pid: int, title: str, exprs: list[Query], unit: str, x: int, y: int
) -> timeseries.Panel:
    """Panel ``pid`` at (``x``, ``y``): one Prometheus target per query, a table legend."""
    legend = (
        common.VizLegendOptions()
        .display_mode(LegendDisplayMode.TABLE)
        .placement(LegendPlacement.BOTTOM)
        .show_legend(True)
    )
    panel = (
        timeseries.Panel()
        .id(pid)
        .title(title)
        .datasource(DATASOURCE)
        .grid_pos(GridPos(h=8, w=12, x=x, y=y))
        .unit(unit)
        .legend(legend)
    )
    for i, (expr, legend_format) in enumerate(exprs):
        target = (
            prometheus.Dataquery()
            .ref_id(chr(ord("A") + i))
            .datasource(DATASOURCE)
            .expr(expr)
            .legend_format(legend_format)
        )
        panel = panel.with_target(target)
    return panel


def board(uid: str, title: str, panels: list[PanelSpec], flow_metric: str) -> Dashboard:
    """Dashboard ``uid`` with its ``flow`` variable (values from ``flow_metric``'s labels)."""
    flow = (
        dashboard.QueryVariable("flow")
        .label("流程 flow")
        .datasource(DATASOURCE)
        .query(f"label_values({flow_metric}, flow)")
        .include_all(True)
        .all_value(".*")
        .multi(True)
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .current(VariableOption(selected=True, text="All", value="$__all"))
    )
    board = (
        dashboard.Dashboard(title)
        .uid(uid)
        .tags(["dingdee"])
        .timezone("browser")
        .version(1)
        .readonly()
        .refresh("30s")
        .time("now-6h", "now")
        .with_variable(flow)
    )
    for i, (title_, exprs, unit) in enumerate(panels):
        board = board.with_panel(
            time_series(i + 1, title_, exprs, unit, (i % 2) * 12, (i // 2) * 8)
        )
    return board.build()
