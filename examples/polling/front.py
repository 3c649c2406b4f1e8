"""front: asks back to build a report, polls until it is ready (a failed
poll is polled again, up to five polls), then fetches it.
The bug: a refused request to start the report is handled, but an error
answer is read as if it were the job."""
import time

import requests
from flask import Flask, jsonify

BACK = "http://localhost:5001"

app = Flask(__name__)


@app.route("/reports/<name>")
def report(name):
    try:
        started = requests.post(f"{BACK}/reports/{name}", timeout=0.5)
    except requests.exceptions.RequestException:
        return jsonify({"error": "reports are unavailable"}), 503
    job = started.json()["job"]
    for _ in range(5):
        try:
            poll = requests.get(f"{BACK}/jobs/{job}", timeout=0.5)
            if poll.ok and poll.json()["ready"]:
                break
        except requests.exceptions.RequestException:
            pass
        time.sleep(0.01)
    else:
        return jsonify({"error": "the report is not ready"}), 503
    try:
        result = requests.get(f"{BACK}/jobs/{job}/result", timeout=0.5)
        result.raise_for_status()
    except requests.exceptions.RequestException:
        return jsonify({"error": "the report is lost"}), 503
    return jsonify({"name": name, "total": result.json()["total"]})


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
