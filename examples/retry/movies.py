"""movies: titles by id."""
from flask import Flask, jsonify, request

TITLES = {"267eedb8": "The Good Dinosaur", "7daf7208": "Creed"}

app = Flask(__name__)


@app.route("/movies")
def movies():
    ids = request.args.get("ids", "").split(",")
    return jsonify({i: TITLES[i] for i in ids if i in TITLES})


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5002)
