"""What the dashboard renders from shapes the api does not produce on this branch yet: a probe result (the fields of
`cg_common.probes.ProbeResult`, as `POST /keys/{id}/probe` answers) and the `/metrics` `pipeline` object; and the
chart's arithmetic. Rendered through the real templates and the real message models, no service involved."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from jinja2 import Environment

from cg_common.probes import ProbeResult, ProbeUsage
from cg_web.chart import OTHER, SERIES, stacked_by_model
from cg_web.overview_data import Overview, Part, pipeline_health
from cg_web.rendering import environment


def templates() -> Environment:
    return environment({name: "/static/" + name for name in ("css/app.css", "favicon.svg")} | _vendor())


def _vendor() -> dict[str, str]:
    names = ("vendor/htmx-2.0.11/htmx.min.js", "vendor/htmx-ext-sse-2.2.4/sse.min.js")
    return {name: "/static/" + name for name in names}


def block(template_name: str, name: str, context: dict[str, Any]) -> str:
    template = templates().get_template(template_name)
    base = {"messages": [], "errors": {}, "signed_in": True, "public": False, "csrf_token": "t", "path": "/dashboard"}
    return "".join(template.blocks[name](template.new_context({**base, **context})))


def probe(**fields: Any) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "request_id": "manual:1",
        "key_id": 7,
        "reason": "manual",
        "probed_at": datetime.now(UTC),
        "mode": "models",
        "outcome": "ok",
        "ok": True,
    }
    return ProbeResult(**(defaults | fields)).model_dump(mode="json")


def test_a_probe_result_is_shown_in_words() -> None:
    ok = probe(http_status=200, latency_ms=312.4)
    html = block("keys.html", "probe_result", {"key": {"id": 7}, "probes": {7: {"key_id": 7, "result": ok}}})
    assert "Works: ok" in html and "HTTP 200" in html and "312 ms" in html

    failing = probe(
        ok=False, outcome="invalid_api_key", http_status=401, error_code="invalid_api_key", error_message="Bad key."
    )
    html = block("keys.html", "probe_result", {"key": {"id": 7}, "probes": {7: {"key_id": 7, "result": failing}}})
    assert "Fails: invalid api key" in html and "HTTP 401" in html and "Bad key." in html

    completion = probe(mode="completion", model="gpt-4o-mini", usage=ProbeUsage(input_tokens=8, output_tokens=1))
    html = block("keys.html", "probe_result", {"key": {"id": 7}, "probes": {7: {"key_id": 7, "result": completion}}})
    assert "9 tokens on gpt-4o-mini" in html

    timeout = {"key_id": 7, "error": "No answer from the prober in time: no probe result within 15 s"}
    html = block("keys.html", "probe_result", {"key": {"id": 7}, "probes": {7: timeout}})
    assert "Test failed: No answer from the prober in time" in html


def test_pipeline_health_reads_the_metrics_pipeline_object_and_says_unknown_where_it_is_missing() -> None:
    metrics = {
        "db": {"usage_rows": 1250, "active_keys": 3, "last_usage_at": None},
        "pipeline": {
            "scheduler": {"alive": True, "last_beat_at": "2026-12-01T06:00:00+00:00"},
            "prober": {"alive": False, "last_beat_at": None},
            "dlq": {"messages": 4},
        },
    }
    html = _overview_live(pipeline_health(metrics))
    assert 'data-testid="health-scheduler">alive' in html
    assert 'data-testid="health-prober">down' in html
    assert 'data-testid="health-ledger">unknown' in html  # not reported at all
    assert 'data-testid="dlq">4' in html
    html = _overview_live(pipeline_health({"db": {}}))  # the api before the pipeline object existed
    assert html.count(">unknown<") == 5  # four services and the DLQ


def _overview_live(pipeline: dict[str, Any]) -> str:
    days = [date(2026, 11, 30), date(2026, 12, 1)]
    overview = Overview(
        spend=Part(error="The api cannot be reached right now."),
        chart=Part(stacked_by_model(days, {})),
        top_keys=Part(value=[]),
        top_models=Part(error="slow"),
        pipeline=Part(pipeline),
        as_of=datetime.now(UTC),
    )
    return block("overview.html", "live", {"o": overview})


def test_the_chart_stacks_each_day_and_folds_the_long_tail_into_other() -> None:
    days = [date(2026, 11, 1) + timedelta(days=n) for n in range(3)]
    costs = {
        days[0]: {f"model-{n}": Decimal(n + 1) for n in range(SERIES + 2)},
        days[2]: {"model-0": Decimal("0.5")},
    }
    chart = stacked_by_model(days, costs)
    assert [name for _, name in chart.legend][-1] == OTHER and len(chart.legend) == SERIES + 1
    first_day = [s for s in chart.segments if s.x < chart.plot_left + (chart.plot_right - chart.plot_left) / 3]
    assert len(first_day) == SERIES + 1  # the five biggest models and "other" (two models)
    # Heights are proportional to cost: the day's stack against the axis maximum (a round number above 28).
    total_height = sum(s.height for s in first_day)
    plot_height = chart.plot_bottom - 12
    assert abs(total_height / plot_height - 28 / 50) < 1e-6
    assert not stacked_by_model(days, {}).segments and stacked_by_model(days, {}).empty
