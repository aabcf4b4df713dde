"""A pywa bot, unchanged, receiving Hourglass's forwarded webhooks with pywa's own
signature validation on (app_secret = the subscription's secret).

Usage: receive_from_hourglass.py PORT SECRET
Prints one JSON object per update it handles on stdout, after {"kind": "ready"}.
"""

import json, sys, threading
from flask import Flask
from pywa import WhatsApp, types
port, secret = int(sys.argv[1]), sys.argv[2]
app = Flask(__name__)
wa = WhatsApp(phone_id="106540352242922", token="unused", server=app, verify_token="verify", app_secret=secret, webhook_endpoint="/whatsapp")
@wa.on_message()
def on_message(client, msg: types.Message):
    print(json.dumps({"kind": "message", "id": msg.id, "text": msg.text, "from": msg.from_user.wa_id}), flush=True)
@wa.on_message_status()
def on_status(client, status: types.MessageStatus):
    print(json.dumps({"kind": "status", "id": status.id, "status": str(status.status)}), flush=True)
print(json.dumps({"kind": "ready"}), flush=True)
app.run(host="127.0.0.1", port=port)
