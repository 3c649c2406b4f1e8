"""cinema-3 users: cinema-2 with the call to bookings retried once."""
from flask import Flask, abort, jsonify

from cinema import TIMEOUT_MIDDLE, get, serve

app = Flask(__name__)
ATTEMPTS = 2


@app.route("/users/<user>/bookings")
def user_bookings(user):
    for _ in range(ATTEMPTS):
        answer = get("bookings", f"/bookings/{user}", TIMEOUT_MIDDLE)
        if answer is not None:
            return jsonify({"bookings": answer["bookings"], "movies": [answer["movie"]]})
    abort(503)


if __name__ == "__main__":
    serve(app)
