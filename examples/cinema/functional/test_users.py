#!/usr/bin/env python3
"""The cinema examples' functional test: users answers chris's bookings
with a movie, or, when Filibuster injected a fault somewhere, a 503."""
import requests

import filibuster
from filibuster.assertions import was_fault_injected


def test_users_bookings():
    response = requests.get("http://localhost:5000/users/chris/bookings", timeout=5)
    if response.status_code == 200:
        assert response.json()["movies"], response.text
    else:
        assert response.status_code == 503, f"users answered {response.status_code}"
        assert was_fault_injected(), "users failed with no fault injected"


if __name__ == "__main__":
    filibuster.loop(test_users_bookings)
