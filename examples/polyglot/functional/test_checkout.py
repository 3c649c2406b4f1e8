#!/usr/bin/env python3
"""The polyglot example's functional test: gateway checks out chris's
cart, or answers 503 when Filibuster failed a call it cannot do without."""
import requests

import filibuster
from filibuster.assertions import was_fault_injected


def test_checkout():
    response = requests.get("http://127.0.0.1:5000/checkout/chris", timeout=5)
    if response.status_code == 200:
        assert response.json()["total"] == 2, response.text
    else:
        assert response.status_code == 503, f"gateway answered {response.status_code}: {response.text}"
        assert was_fault_injected(), "gateway failed with no fault injected"


if __name__ == "__main__":
    filibuster.loop(test_checkout)
