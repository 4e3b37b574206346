"""Benchmark (not a test): node down -> MinIONodeDown at the webhook, against the bound the configuration implies.

Real Prometheus and real Alertmanager run the project's rendered configuration on loopback
(tests/lab/alert_lab.py); the scraped MinIO nodes are STAND-INS serving MinIO's metrics format,
so the figures are those of the monitoring pipeline, not of MinIO. Each trial stops one stand-in
node, times the firing notification at the webhook, restarts the node and times the resolved one.

    .venv/bin/python -m tests.bench.bench_alert_latency --trials 3 --scrape 5s --evaluation 5s --group-wait 5s

Bound for firing = scrape interval + evaluation interval + the rule's `for` + group_wait: the last
good scrape may be up to one scrape interval old, the rule sees the failed scrape at the next
evaluation, stays pending for `for`, and Alertmanager holds a new group for group_wait.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

from infra.config.monitoring import duration_seconds
from infra.monitoring.metrics import ALERTS_DIR
from tests.lab.alert_lab import AlertLab, LabTiming, alert_lab, wait_for

ALERT = "MinIONodeDown"


def rule_hold_seconds() -> float:
    for path in ALERTS_DIR.glob("*.rules.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if rule.get("alert") == ALERT:
                    return duration_seconds(rule["for"])
    raise SystemExit(f"no rule {ALERT} in {ALERTS_DIR}")


def trial(lab: AlertLab, index: int, timeout: float) -> tuple[float, float, float]:
    """(seconds to firing in Prometheus, to firing at the webhook, restart to resolved at the webhook)."""
    node = lab.nodes[index % len(lab.nodes)]
    name = f"minio{node.index}"

    def at_webhook(status: str, since: float) -> list[float]:
        return [
            arrived
            for arrived, alert in lab.receiver.notifications(ALERT, status)
            if alert["labels"].get("node") == name and arrived > since
        ]

    stopped = time.monotonic()
    node.stop()
    try:
        wait_for(lambda: lab.alert_state(ALERT, node=name) == "firing", f"{ALERT} firing", timeout, interval=0.1)
        firing = time.monotonic() - stopped
        arrived = wait_for(lambda: at_webhook("firing", stopped), f"{ALERT} at the webhook", timeout, interval=0.1)[0]
    finally:
        node.start()
    restarted = time.monotonic()
    resolved = wait_for(lambda: at_webhook("resolved", restarted), "resolved notice", timeout, interval=0.1)[0]
    # let the resolved group be forgotten, so the next trial starts a new group (group_wait, not group_interval)
    wait_for(lambda: lab.alert_state(ALERT) is None, "alert cleared", timeout)
    time.sleep(2)
    return firing, arrived - stopped, resolved - restarted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--scrape", default="5s", help="scrape interval (deployed default 15s)")
    parser.add_argument("--evaluation", default="5s", help="evaluation interval (deployed default 15s)")
    parser.add_argument("--group-wait", default="5s", help="Alertmanager group_wait (deployed default 30s)")
    args = parser.parse_args(argv)

    timing = LabTiming(args.scrape, args.evaluation, args.group_wait, group_interval="1s")
    hold = rule_hold_seconds()
    scrape, evaluation, group_wait = (duration_seconds(v) for v in (args.scrape, args.evaluation, args.group_wait))
    bound = scrape + evaluation + hold + group_wait
    timeout = bound + 60
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-alert-") as workdir, alert_lab(Path(workdir), timing) as lab:
        for index in range(args.trials):
            firing, webhook, resolved = trial(lab, index + 1, timeout)
            results.append((firing, webhook, resolved))
            print(f"trial {index + 1}: firing in Prometheus {firing:.1f}s, at webhook {webhook:.1f}s, resolved {resolved:.1f}s",
                  file=sys.stderr)

    webhooks = [webhook for _, webhook, _ in results]
    print(f"scrape {args.scrape}, evaluation {args.evaluation}, for {hold:g}s, group_wait {args.group_wait}: "
          f"bound {bound:g}s (scrape + evaluation + for + group_wait)")
    print("| trial | firing in Prometheus (s) | at webhook (s) | resolved at webhook after restart (s) |")
    print("|---|---|---|---|")
    for index, (firing, webhook, resolved) in enumerate(results, start=1):
        print(f"| {index} | {firing:.1f} | {webhook:.1f} | {resolved:.1f} |")
    print(f"node down -> webhook: min {min(webhooks):.1f}s, median {statistics.median(webhooks):.1f}s, "
          f"max {max(webhooks):.1f}s; bound {bound:g}s; within bound: {all(w <= bound for w in webhooks)}")
    return 0 if all(webhook <= bound for webhook in webhooks) else 1


if __name__ == "__main__":
    sys.exit(main())
