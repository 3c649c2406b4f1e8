#!/usr/bin/env python3
"""Checkout answers whether an item is available; when a dependency fails
it answers 503 and names the service that failed. The test holds the agent
to that name: the service it says failed is the one a fault was injected
on."""
import os

import requests

import filibuster
from filibuster.assertions import was_fault_injected, was_fault_injected_on

GATEWAY_URL = "http://{}:5000".format(os.environ.get("PEER_HOST", "0.0.0.0"))


def test_checkout():
    response = requests.get(f"{GATEWAY_URL}/checkout/widget", timeout=10)
    if response.status_code == 200:
        # A fault that means "no such item" (an analysed 404) is an answer.
        if not was_fault_injected():
            assert response.json() == {"item": "widget", "available": True}
    else:
        assert response.status_code == 503, response.text
        failed = response.json()["service"]
        assert was_fault_injected_on(failed), f"{failed} failed, yet no fault was injected on it"


if __name__ == "__main__":
    filibuster.loop(test_checkout)
