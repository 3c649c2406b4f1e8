"""store: a user's records."""
from flask import Flask, jsonify

app = Flask(__name__)


@app.route("/records/<user>")
def records(user):
    return jsonify([{"user": user, "record": n} for n in range(3)])


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5002)
