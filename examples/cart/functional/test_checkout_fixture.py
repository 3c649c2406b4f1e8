"""The same checkout under pytest (pytest.toml): the cart is a fixture,
and the marker says its setup is not under test."""
import pytest

from test_checkout import check_out, open_cart


@pytest.fixture
def cart():
    return open_cart()


@pytest.mark.filibuster
@pytest.mark.filibuster_setup("cart")
def test_checkout_with_a_cart(cart):
    check_out(*cart)
