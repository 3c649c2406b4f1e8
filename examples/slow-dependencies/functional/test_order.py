#!/usr/bin/env python3
"""An order page answers within 3 s, as the shop's front end waits."""
import requests


def test_order():
    response = requests.get("http://localhost:5500/orders/lamp", timeout=3)
    assert response.status_code == 200, f"shop answered {response.status_code}"
    assert response.json() == {"item": "lamp", "available": True, "price": 1250}


if __name__ == "__main__":
    test_order()
