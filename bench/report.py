"""Plain-text tables and PASS/FAIL targets for the bench results."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Target:
    name: str
    limit: str
    value: float
    unit: str
    passed: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "limit": self.limit,
            "value": _round(self.value),
            "unit": self.unit,
            "result": "PASS" if self.passed else "FAIL",
        }


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (NaN without any value)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))]


def _round(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 3)


def number(value: float | None, digits: int = 1) -> str:
    """`value` with `digits` decimals; "-" for none or NaN."""
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def matrix_table(cells: list[dict[str, Any]]) -> str:
    header = (
        f"{'call':<8}{'lat':>5}{'conc':>6} | {'direct/s':>9}{'p50':>8}{'p99':>8} | {'gw/s':>9}{'p50':>8}{'p99':>8}"
        f" | {'gw/dir':>7}{'+p50':>8}{'+p99':>8} | {'gwCPU':>7}{'up/rep':>7}{'err':>5}"
    )
    lines = [header, "-" * len(header)]
    for cell in cells:
        d, g = cell["direct"], cell["gateway"]
        lines.append(
            f"{cell['call']:<8}{cell['latency_ms']:>3}ms{cell['concurrency']:>6} | "
            f"{number(d['req_per_s']):>9}{number(d['p50_ms'], 2):>8}{number(d['p99_ms'], 2):>8} | "
            f"{number(g['req_per_s']):>9}{number(g['p50_ms'], 2):>8}{number(g['p99_ms'], 2):>8} | "
            f"{number(cell['throughput_ratio'], 2):>7}"
            f"{number(cell['added_p50_ms'], 2):>8}{number(cell['added_p99_ms'], 2):>8} | "
            f"{number(cell['gateway_cpu_ms_per_req'], 2):>7}{number(cell['upstream_per_reply'], 2):>7}"
            f"{d['errors'] + g['errors']:>5}"
        )
    lines.append(
        "req/s = successful requests per second; p50/p99 in ms; gw/dir = gateway/direct throughput; "
        "+p50/+p99 = gateway minus direct (ms);\n"
        "gwCPU = gateway process CPU ms per reply; up/rep = requests the fake received per gateway reply "
        "(< 1: identical concurrent public reads were coalesced by the gateway's single-flight)."
    )
    return "\n".join(lines)


def targets_table(targets: list[Target]) -> str:
    width = max(len(t.name) for t in targets)
    lines = []
    for t in targets:
        lines.append(
            f"{'PASS' if t.passed else 'FAIL'}  {t.name:<{width}}  {number(t.value, 2):>8} {t.unit:<6} target {t.limit}"
        )
    return "\n".join(lines)


def evaluate(cells: list[dict[str, Any]], memory: dict[str, Any], new_key: dict[str, Any]) -> list[Target]:
    def cell(call: str, latency: int, concurrency: int) -> dict[str, Any] | None:
        for c in cells:
            if (c["call"], c["latency_ms"], c["concurrency"]) == (call, latency, concurrency):
                return c
        return None

    targets = []
    for call in ("ticker", "accounts"):
        c = cell(call, 0, 1)
        if c is not None:
            added = c["added_p50_ms"]
            targets.append(Target(f"added p50, {call}, c=1, 0 ms", "<= 0.5 ms", added, "ms", added <= 0.5))
    for call, note in (("ticker", " (coalesced)"), ("accounts", "")):
        c = cell(call, 50, 100)
        if c is not None:
            ratio = c["throughput_ratio"]
            name = f"gw/direct throughput, {call}, c=100, 50 ms{note}"
            targets.append(Target(name, ">= 0.7x", ratio, "x", ratio >= 0.7))
    if memory:
        rss = memory["rss_after_mb"]
        targets.append(Target(f"gateway RSS with {memory['keys']} cached keys", "<= 400 MB", rss, "MB", rss <= 400))
    if new_key:
        extra = new_key["extra_p50_ms"]
        targets.append(Target("new key first private call, extra p50", "<= 5 ms", extra, "ms", extra <= 5))
    return targets
