"""``make run``'s progress view: figures, every part's state and each service's restarts."""

from __future__ import annotations

from rich.console import Console

from dingdee_dev.watch import Progress


def _progress(**overrides: object) -> Progress:
    progress = Progress(
        elapsed=12.0,
        counts={"extracted": 40, "transformed": 37, "dlq.loader": 2, "dlq.transformer": 1},
        loaded=30,
        expected=37,
        parts={
            "Kafka": "ok",
            "DingTalk": "ok",
            "Kingdee": "not answering (timeout)",
            "loader": "exited -9, restart in 0.8s",
        },
        restarts={"loader": 3},
    )
    for name, value in overrides.items():
        setattr(progress, name, value)
    return progress


class TestProgress:
    def test_the_table_shows_figures_states_and_restarts(self) -> None:
        console = Console(record=True, width=200)
        console.print(_progress().table())
        text = console.export_text()
        assert "not answering (timeout)" in text
        assert "exited -9, restart in 0.8s" in text
        rows = {line.split("│")[1].strip(): line for line in text.splitlines() if "│" in line}
        assert rows["loader"].split("│")[3].strip() == "3"
        assert rows["Kingdee"].split("│")[3].strip() == "-"  # not supervised

    def test_the_line_names_a_part_that_does_not_answer(self) -> None:
        line = _progress().line()
        assert "loaded (Kingdee) 30 · expected 37 · dead-lettered 3" in line
        assert "Kingdee not answering (timeout)" in line
        assert "loader exited -9, restart in 0.8s (restarts 3)" in line

    def test_unknown_figures_are_not_shown_as_zero(self) -> None:
        line = _progress(counts={}, loaded=None, expected=None).line()
        assert (
            "extracted ? · transformed ? · loaded (Kingdee) ? · expected ? · dead-lettered ?"
            in line
        )

    def test_a_change_is_anything_but_the_time(self) -> None:
        assert _progress().key() == _progress(elapsed=99.0).key()
        assert _progress().key() != _progress(restarts={"loader": 4}).key()
        assert _progress().key() != _progress(counts={"dlq.loader": 3}).key()
