#!/usr/bin/env python3
"""The product page shows the product, with its reviews when reviews can be
had; when the catalog cannot be reached, the storefront says so with 503."""
import requests

from filibuster.assertions import was_fault_injected_on


def test_product_page():
    response = requests.get("http://localhost:5040/product/1", timeout=10)
    if was_fault_injected_on("catalog"):
        assert response.status_code in (200, 503), response.text
        return
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["name"] == "desk lamp"
    if not was_fault_injected_on("reviews"):
        assert page["reviews"], page


if __name__ == "__main__":
    test_product_page()
