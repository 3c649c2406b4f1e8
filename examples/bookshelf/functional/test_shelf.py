#!/usr/bin/env python3
"""Ada's shelf lists her books with their stars; when a call behind it was
failed, front says the shelf is unavailable (503) instead."""
import requests

import filibuster
from filibuster.assertions import was_fault_injected


def test_shelf():
    response = requests.get("http://localhost:5310/shelf/ada", timeout=5)
    if was_fault_injected():
        assert response.status_code == 503, response.text
    else:
        assert response.status_code == 200, response.text
        assert response.json() == [
            {"title": "Dune", "stars": 5},
            {"title": "Emma", "stars": 4},
        ]


if __name__ == "__main__":
    filibuster.loop(test_shelf)
