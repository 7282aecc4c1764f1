"""The monitoring manifests: promtool accepts the rules, every dashboard query parses."""

import json
import subprocess
import sys
from pathlib import Path

import yaml
from plugins.prerequisites import require_command
from plugins.prometheus import PROMETHEUS_RULE, rule_groups

REPO = Path(__file__).resolve().parents[1]
MONITORING = REPO / "deploy" / "monitoring"


def promtool() -> str:
    return require_command("promtool", "Debian: apt-get install prometheus")


def dashboard_queries() -> list[tuple[str, str, str]]:
    queries = []
    for path in sorted((MONITORING / "dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                queries.append((path.stem, panel["title"], target["expr"]))
    return queries


def test_promtool_accepts_the_rules(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(rule_groups()))
    result = subprocess.run(
        [promtool(), "check", "rules", str(rules)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 15 rules found" in result.stdout


def test_every_dashboard_query_parses(tmp_path):
    # promtool parses expressions in rule files: wrap each panel query as a recording rule.
    rules = [
        {"record": f"panel:{i}", "expr": expr} for i, (_, _, expr) in enumerate(dashboard_queries())
    ]
    path = tmp_path / "panels.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    result = subprocess.run(
        [promtool(), "check", "rules", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboards_are_generated_and_labelled_for_the_grafana_sidecar():
    check = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "generate_dashboards.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    kustomization = yaml.safe_load((MONITORING / "kustomization.yaml").read_text())
    assert kustomization["generatorOptions"]["labels"]["grafana_dashboard"] == "1"
    files = {f for gen in kustomization["configMapGenerator"] for f in gen["files"]}
    assert files == {f"dashboards/{p.name}" for p in (MONITORING / "dashboards").glob("*.json")}
    titles = {json.loads(p.read_text())["title"] for p in (MONITORING / "dashboards").glob("*")}
    assert titles == {
        "InfiniteContext / Operator",
        "InfiniteContext / Training",
        "InfiniteContext / Serving",
    }


def test_the_alerts_a_platform_team_pages_on_are_there():
    spec = yaml.safe_load(PROMETHEUS_RULE.read_text())["spec"]
    alerts = {r["alert"] for g in spec["groups"] for r in g["rules"] if "alert" in r}
    assert alerts == {
        "InferenceServiceDegraded",
        "InferenceServiceRolledBack",
        "VLLMQueueDepthHigh",
        "VLLMKVCacheNearlyFull",
        "TrainingRunStalled",
        "SlurmJobPendingTooLong",
        "OperatorReconcileErrors",
    }
    for group in spec["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                assert rule["labels"]["severity"] in {"warning", "critical"}
                assert rule["annotations"]["summary"]
