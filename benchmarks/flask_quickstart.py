"""Twilio's SMS quickstart for Python, as Twilio publishes it: a Flask app answering every
text with TwiML. It checks no signature and stores nothing; Twilio sends the reply.

    gunicorn -w 2 benchmarks.flask_quickstart:app     (pip install -e '.[benchmarks]')
"""

from __future__ import annotations

from flask import Flask
from twilio.twiml.messaging_response import MessagingResponse

app = Flask(__name__)


@app.route("/sms", methods=["GET", "POST"])
def sms_reply() -> str:
    """Respond to incoming messages with a friendly SMS."""
    resp = MessagingResponse()
    resp.message("The Robots are coming! Head for the hills!")
    return str(resp)
