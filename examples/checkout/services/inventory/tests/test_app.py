"""inventory's own unit tests, beside its code as people keep them. The
mock's 403 is the test's, not something inventory ever answers: the
analysis must not read it as inventory's behaviour."""
from unittest import mock

from app import app


def test_known_item():
    client = app.test_client()
    assert client.get("/stock/widget").json["count"] == 3


def test_forbidden_upstream_is_mocked():
    upstream = mock.Mock(status_code=403)
    upstream.json.return_value = {"error": "forbidden"}
    with mock.patch("requests.get", return_value=upstream):
        assert upstream.status_code == 403
