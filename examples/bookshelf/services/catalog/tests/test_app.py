"""catalog's own unit tests: their mocks answer what catalog never does."""
from unittest import mock

from werkzeug.exceptions import Conflict


def test_a_conflict_from_storage_is_passed_on():
    storage = mock.Mock(side_effect=Conflict)
    try:
        storage()
    except Conflict as error:
        assert error.code == 409
