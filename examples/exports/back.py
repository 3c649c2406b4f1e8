"""back: runs exports. Fetching a user's records from store can fail; the
job then says so."""
import requests
from flask import Flask, jsonify

STORE = "http://localhost:5002"
jobs = {}

app = Flask(__name__)


@app.route("/exports/<user>", methods=["POST"])
def start(user):
    try:
        records = requests.get(f"{STORE}/records/{user}", timeout=1)
        records.raise_for_status()
        jobs[user] = {"status": "done", "records": records.json()}
    except requests.exceptions.RequestException:
        jobs[user] = {"status": "failed"}
    return jsonify({"user": user}), 202


@app.route("/exports/<user>")
def status(user):
    return jsonify(jobs.get(user, {"status": "unknown"}))


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5001)
