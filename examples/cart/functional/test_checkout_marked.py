#!/usr/bin/env python3
"""The same checkout, its setup marked in the test itself rather than by
[test] scope (marked.toml): nothing done inside `filibuster.setup()` is
under test."""
import filibuster
from test_checkout import check_out, open_cart


def test_checkout_marked():
    with filibuster.setup():
        headers, cart = open_cart()
    check_out(headers, cart)


if __name__ == "__main__":
    filibuster.loop(test_checkout_marked)
