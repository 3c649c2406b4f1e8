"""bookings (and its replicas): a user's bookings by date. A leaf service."""
import sys

from flask import Flask, abort, jsonify

from cinema import BOOKINGS, SECONDARY_BOOKINGS, serve

app = Flask(__name__)
data = SECONDARY_BOOKINGS if sys.argv[1] == "bookings-secondary" else BOOKINGS


@app.route("/bookings/<user>")
def bookings(user):
    if user not in data:
        abort(404)
    return jsonify(data[user])


if __name__ == "__main__":
    serve(app)
