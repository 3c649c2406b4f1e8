"""front: starts an export at back, then polls back until it is done.
The bug: a job that failed never becomes "done", and front keeps polling
(there is no "failed" branch and no deadline)."""
import time

import requests
from flask import Flask, jsonify

BACK = "http://localhost:5001"

app = Flask(__name__)


@app.route("/export/<user>")
def export(user):
    try:
        started = requests.post(f"{BACK}/exports/{user}", timeout=2)
        started.raise_for_status()
        while True:
            job = requests.get(f"{BACK}/exports/{user}", timeout=2)
            job.raise_for_status()
            if job.json()["status"] == "done":
                return jsonify(job.json()["records"])
            time.sleep(0.01)
    except requests.exceptions.RequestException:
        return jsonify({"error": "exports are unavailable"}), 503


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
