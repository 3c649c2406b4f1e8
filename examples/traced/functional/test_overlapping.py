#!/usr/bin/env python3
"""Two requests to front at once, each its own trace: each answers 200,
or 503 when Filibuster failed a call."""
import os
from concurrent.futures import ThreadPoolExecutor

import requests

import filibuster
from filibuster.assertions import was_fault_injected


def get(name):
    traceparent = f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"
    response = requests.get(
        f"http://127.0.0.1:5000/work/{name}", headers={"traceparent": traceparent}, timeout=5
    )
    return response.status_code


def test_overlapping():
    with ThreadPoolExecutor(2) as pool:
        statuses = list(pool.map(get, ["a", "b"]))
    for status in statuses:
        assert status == 200 or (status == 503 and was_fault_injected()), statuses


if __name__ == "__main__":
    filibuster.loop(test_overlapping)
