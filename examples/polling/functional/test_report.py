#!/usr/bin/env python3
"""A report answers its total, or 503 when reports are down."""
import requests

import filibuster


def test_report():
    response = requests.get("http://localhost:5000/reports/q3", timeout=30)
    assert response.status_code in (200, 503), response.text


if __name__ == "__main__":
    filibuster.loop(test_report)
