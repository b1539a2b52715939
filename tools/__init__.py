"""Developers' and operators' tools: benchmarks, the load test, the smoke run, the motion eval,
and the harness that starts a real server for them and the integration tests.

Run from a checkout (``python -m tools.bench``, ``make bench``); none of it is in the wheel, and
nothing under ``alive_service``, ``safety`` or ``provenance`` imports it.
"""
