"""Writes the Grafana dashboards under deploy/monitoring/dashboards/ from one table of panels.

    .venv/bin/python scripts/generate_dashboards.py          # rewrite the JSON
    .venv/bin/python scripts/generate_dashboards.py --check  # fail if the JSON is stale

Each panel is (title, unit, [(PromQL, legend)]); tests/test_monitoring_*.py runs every
expression against a real Prometheus scraping the operator, a trainer and vLLM.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "deploy" / "monitoring" / "dashboards"

Panel = tuple[str, str, list[tuple[str, str]]]

DASHBOARDS: dict[str, tuple[str, list[Panel]]] = {
    "operator": (
        "InfiniteContext / Operator",
        [
            (
                "Reconciles per second",
                "ops",
                [
                    (
                        "sum by (kind, result) (rate(icx_operator_reconciles_total[5m]))",
                        "{{kind}} {{result}}",
                    ),
                ],
            ),
            (
                "Reconcile errors per second",
                "ops",
                [
                    ("sum by (kind) (rate(icx_operator_reconcile_errors_total[5m]))", "{{kind}}"),
                ],
            ),
            (
                "Reconcile latency p50 / p95",
                "s",
                [
                    (
                        "histogram_quantile(0.5, sum by (kind, le) "
                        "(rate(icx_operator_reconcile_duration_seconds_bucket[5m])))",
                        "p50 {{kind}}",
                    ),
                    (
                        "histogram_quantile(0.95, sum by (kind, le) "
                        "(rate(icx_operator_reconcile_duration_seconds_bucket[5m])))",
                        "p95 {{kind}}",
                    ),
                ],
            ),
            (
                "Objects by kind and phase",
                "short",
                [
                    ("sum by (kind, phase) (icx_operator_objects)", "{{kind}} {{phase}}"),
                ],
            ),
        ],
    ),
    "training": (
        "InfiniteContext / Training",
        [
            ("Loss", "short", [("icx_trainer_loss", "{{run}}")]),
            ("Tokens per second", "short", [("icx_trainer_tokens_per_second", "{{run}}")]),
            ("Model FLOPs utilisation", "percentunit", [("icx_trainer_mfu", "{{run}}")]),
            ("Step time", "s", [("icx_trainer_step_seconds", "{{run}}")]),
            ("Step", "short", [("icx_trainer_step", "{{run}}")]),
            ("Checkpoints saved", "short", [("icx_trainer_checkpoints_total", "{{run}}")]),
        ],
    ),
    "serving": (
        "InfiniteContext / Serving",
        [
            (
                "Requests running and waiting",
                "short",
                [
                    ("sum by (model_name) (vllm:num_requests_running)", "running {{model_name}}"),
                    ("sum by (model_name) (vllm:num_requests_waiting)", "waiting {{model_name}}"),
                ],
            ),
            (
                "KV-cache usage",
                "percentunit",
                [
                    ("max by (model_name) (vllm:kv_cache_usage_perc)", "{{model_name}}"),
                ],
            ),
            (
                "Time to first token p50 / p95",
                "s",
                [
                    (
                        "histogram_quantile(0.5, sum by (model_name, le) "
                        "(rate(vllm:time_to_first_token_seconds_bucket[5m])))",
                        "p50 {{model_name}}",
                    ),
                    (
                        "histogram_quantile(0.95, sum by (model_name, le) "
                        "(rate(vllm:time_to_first_token_seconds_bucket[5m])))",
                        "p95 {{model_name}}",
                    ),
                ],
            ),
            (
                "Inter-token latency p50 / p95",
                "s",
                [
                    (
                        "histogram_quantile(0.5, sum by (model_name, le) "
                        "(rate(vllm:inter_token_latency_seconds_bucket[5m])))",
                        "p50 {{model_name}}",
                    ),
                    (
                        "histogram_quantile(0.95, sum by (model_name, le) "
                        "(rate(vllm:inter_token_latency_seconds_bucket[5m])))",
                        "p95 {{model_name}}",
                    ),
                ],
            ),
            (
                "Output tokens per second",
                "short",
                [
                    (
                        "sum by (model_name) (rate(vllm:generation_tokens_total[1m]))",
                        "{{model_name}}",
                    ),
                ],
            ),
            (
                "Replicas: ready vs desired",
                "short",
                [
                    (
                        'sum by (namespace, name) (icx_inferenceservice_replicas{state="ready"})',
                        "ready {{name}}",
                    ),
                    (
                        'sum by (namespace, name) (icx_inferenceservice_replicas{state="desired"})',
                        "desired {{name}}",
                    ),
                ],
            ),
        ],
    ),
}


def dashboard(uid: str, title: str, panels: list[Panel]) -> dict[str, Any]:
    return {
        "uid": f"infinitecontext-{uid}",
        "title": title,
        "tags": ["infinitecontext"],
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "type": "datasource",
                    "query": "prometheus",
                    "label": "Data source",
                    "current": {},
                }
            ]
        },
        "panels": [panel(i, *p) for i, p in enumerate(panels)],
    }


def panel(index: int, title: str, unit: str, queries: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "id": index + 1,
        "type": "timeseries",
        "title": title,
        "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [
            {"refId": chr(ord("A") + n), "expr": expr, "legendFormat": legend}
            for n, (expr, legend) in enumerate(queries)
        ],
    }


def render() -> dict[Path, str]:
    return {
        OUT / f"{uid}.json": json.dumps(dashboard(uid, title, panels), indent=2) + "\n"
        for uid, (title, panels) in DASHBOARDS.items()
    }


def main() -> int:
    files = render()
    if "--check" in sys.argv:
        stale = [p.name for p, text in files.items() if not p.exists() or p.read_text() != text]
        if stale:
            print(f"stale dashboards: {stale}; run scripts/generate_dashboards.py", file=sys.stderr)
        return 1 if stale else 0
    OUT.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        path.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
