"""Prometheus metrics, served on ``ALIVE_METRICS_PORT`` when it is set."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

REQUESTS = Counter("alive_requests_total", "RPCs by method and outcome", ["method", "code"])
STAGE_SECONDS = Histogram(
    "alive_stage_seconds", "Pipeline stage latency", ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
)
QUEUE_DEPTH = Gauge("alive_queue_depth", "Animate requests admitted but not yet running")
SAFETY_BLOCKS = Counter("alive_safety_blocks_total", "Requests refused by policy",
                        ["category", "stage"])


def serve(port: int) -> None:
    start_http_server(port, addr="127.0.0.1")
