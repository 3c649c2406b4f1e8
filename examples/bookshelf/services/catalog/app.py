"""catalog: the books on a user's shelf."""
import logging

from flask import Flask, jsonify
from werkzeug import exceptions as http_errors
from werkzeug.exceptions import BadRequest, NotFound

app = Flask(__name__)
log = logging.getLogger("catalog")

SHELVES = {"ada": ["Dune", "Emma"], "bob": ["Ulysses"]}
SUSPENDED = {"eve"}


@app.get("/books/<user>")
def books(user):
    if not user.isalnum():
        raise BadRequest
    if user in SUSPENDED:
        raise http_errors.Forbidden(description="account suspended")
    if user not in SHELVES:
        # A Gone (410) for deleted accounts is planned, not written yet.
        log.info("answering 404 for %s", user)
        raise NotFound
    return jsonify(SHELVES[user])


if __name__ == "__main__":
    app.run(port=5311, threaded=False)
