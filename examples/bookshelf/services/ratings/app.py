"""ratings: a user's stars per book."""
import os
from http import HTTPStatus

import werkzeug.exceptions as wz
from flask import Flask, abort, jsonify, request

app = Flask(__name__)

RATINGS = {"ada": {"Dune": 5, "Emma": 4}, "bob": {"Ulysses": 3}}
LIMIT = 1000
served = 0


@app.get("/ratings/<user>")
def ratings(user):
    global served
    served += 1
    if served > LIMIT:
        raise wz.TooManyRequests
    if request.args.get("min", "0") not in ("0", "1", "2", "3", "4", "5"):
        abort(HTTPStatus.UNPROCESSABLE_ENTITY)
    return jsonify(RATINGS.get(user, {}))


if __name__ == "__main__":
    app.run(port=int(os.environ.get("PORT", 5312)), threaded=False)
