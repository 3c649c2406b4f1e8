#!/usr/bin/env python3
"""Ada logs in, opens a cart, puts a book in it and checks out: she pays
12, or, when a call behind the checkout was failed, is told the payment
could not be taken (502 or 503)."""
import requests

import filibuster
from filibuster.assertions import was_fault_injected

AUTH = "http://localhost:5400"
CART = "http://localhost:5401"


def open_cart():
    """Logs in, opens a cart and puts a book in it: the setup."""
    token = requests.post(
        f"{AUTH}/login", json={"user": "ada", "password": "lovelace"}, timeout=5
    ).json()["token"]
    headers = {"Authorization": token}
    cart = requests.post(f"{CART}/carts", headers=headers, timeout=5).json()["id"]
    requests.post(
        f"{CART}/carts/{cart}/items", json={"sku": "book"}, headers=headers, timeout=5
    ).raise_for_status()
    return headers, cart


def check_out(headers, cart):
    """What the test checks."""
    response = requests.post(f"{CART}/checkout/{cart}", headers=headers, timeout=5)
    if was_fault_injected():
        assert response.status_code in (502, 503), (
            f"checkout answered {response.status_code}: {response.text[:200]!r}"
        )
    else:
        assert response.status_code == 200, response.text
        assert response.json() == {"paid": 12}


def test_checkout():
    check_out(*open_cart())


if __name__ == "__main__":
    filibuster.loop(test_checkout)
