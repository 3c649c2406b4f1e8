"""front: a user's shelf, their books with the ratings of each."""
import os

import requests
from flask import Flask, jsonify

app = Flask(__name__)

CATALOG = os.environ.get("CATALOG_URL", "http://localhost:5311")
RATINGS = os.environ.get("RATINGS_URL", "http://localhost:5312")
TIMEOUT = 0.5


@app.get("/shelf/<user>")
def shelf(user):
    try:
        books = requests.get(f"{CATALOG}/books/{user}", timeout=TIMEOUT)
        books.raise_for_status()
        ratings = requests.get(f"{RATINGS}/ratings/{user}", timeout=TIMEOUT)
        ratings.raise_for_status()
    except requests.RequestException as error:
        return jsonify(error=f"shelf unavailable: {error.__class__.__name__}"), 503
    scores = ratings.json()
    return jsonify([{"title": b, "stars": scores.get(b)} for b in books.json()])


if __name__ == "__main__":
    app.run(port=int(os.environ.get("PORT", 5310)), threaded=False)
