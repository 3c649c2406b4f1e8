#!/usr/bin/env python3
"""A user's bookings are listed whatever happens to movies; only bookings
failing twice may make users answer, and then with 503."""
import requests

from filibuster.assertions import was_fault_injected_on


def test_bookings():
    response = requests.get("http://localhost:5000/users/chris/bookings", timeout=5)
    if response.status_code == 503:
        assert was_fault_injected_on("bookings"), "users answered 503 though bookings was not failed"
    else:
        assert response.status_code == 200, f"users answered {response.status_code}"
        assert [b["movie"] for b in response.json()] == ["267eedb8", "7daf7208"]


if __name__ == "__main__":
    test_bookings()
