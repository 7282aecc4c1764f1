"""A real Prometheus (Debian's package) on loopback, scraping targets the test names."""

from __future__ import annotations

import json
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from plugins.prerequisites import require_command
from plugins.processes import free_port, wait_http_ok

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_RULE = REPO / "deploy" / "monitoring" / "prometheusrule.yaml"


def rule_groups(for_override: str | None = None) -> dict[str, Any]:
    """The PrometheusRule's groups as a plain Prometheus rule file (optionally every
    `for:` shortened, so a test can see an alert fire without waiting minutes)."""
    groups = yaml.safe_load(PROMETHEUS_RULE.read_text())["spec"]["groups"]
    if for_override is not None:
        for group in groups:
            for rule in group["rules"]:
                if "alert" in rule:
                    rule["for"] = for_override
    return {"groups": groups}


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]

    def query(self, expr: str) -> list[dict[str, Any]]:
        params = urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{params}", timeout=10) as r:
            body = json.load(r)
        if body["status"] != "success":
            raise AssertionError(f"{expr}: {body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def alerts(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.url}/api/v1/alerts", timeout=10) as r:
            alerts: list[dict[str, Any]] = json.load(r)["data"]["alerts"]
        return alerts

    def targets_up(self) -> dict[str, bool]:
        with urllib.request.urlopen(f"{self.url}/api/v1/targets", timeout=10) as r:
            active = json.load(r)["data"]["activeTargets"]
        return {t["labels"]["job"]: t["health"] == "up" for t in active}


def binary(name: str) -> str:
    return require_command(name, "Debian: apt-get install prometheus")


@pytest.fixture
def start_prometheus(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], Prometheus]]:
    """start(targets={job: "host:port"}) → a Prometheus scraping them every second, with
    our rules loaded (alerts' `for` set to 0s)."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(targets: dict[str, str]) -> Prometheus:
        rules = tmp_path / "rules.yaml"
        rules.write_text(yaml.safe_dump(rule_groups(for_override="0s")))
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules)],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [target]}]}
                for job, target in targets.items()
            ],
        }
        config_file = tmp_path / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config))
        port = free_port()
        process = subprocess.Popen(
            [
                binary("prometheus"),
                f"--config.file={config_file}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=(tmp_path / "prometheus.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        processes.append(process)
        server = Prometheus(f"http://127.0.0.1:{port}", process)
        log = tmp_path / "prometheus.log"
        wait_http_ok(f"{server.url}/-/ready", process, log, timeout=60)
        return server

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=30)
