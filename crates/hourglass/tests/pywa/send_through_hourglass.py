"""pywa, unchanged, sending through Hourglass's Cloud API endpoint.

pywa always builds URLs on graph.facebook.com; an httpx transport that sends every
request to Hourglass instead is all it takes (the README shows the same recipe). Hourglass
routes by path only, so the Host header may still name Meta.

Usage: send_through_hourglass.py BASE_URL API_KEY PHONE_NUMBER_ID OPEN_CONTACT CLOSED_CONTACT
Prints one JSON object per step on stdout.
"""

import json
import sys
from urllib.parse import urlsplit

import httpx
from pywa import WhatsApp
from pywa.errors import WhatsAppError
from pywa.types.templates import BodyText, TemplateLanguage

base, api_key, phone_id, open_contact, closed_contact = sys.argv[1:6]
target = urlsplit(base)


class ToHourglass(httpx.HTTPTransport):
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(
            scheme=target.scheme, host=target.hostname, port=target.port
        )
        return super().handle_request(request)


wa = WhatsApp(
    phone_id=phone_id,
    token=api_key,
    session=httpx.Client(transport=ToHourglass()),
    api_version="21.0",
)


def step(name, call):
    try:
        sent = call()
        print(json.dumps({"step": name, "ok": True, "id": sent.id}), flush=True)
    except WhatsAppError as error:
        print(
            json.dumps(
                {
                    "step": name,
                    "ok": False,
                    "error": type(error).__name__,
                    "code": error.code,
                    "details": error.details,
                }
            ),
            flush=True,
        )


step("text_in_window", lambda: wa.send_message(to=open_contact, text="Hello from pywa"))
step(
    "template_to_closed_window",
    lambda: wa.send_template(
        to=closed_contact,
        name="keep_helping",
        language=TemplateLanguage.ENGLISH_US,
        params=[BodyText.params(user="Ana", agent="Sam", company="Lucky Shrub")],
    ),
)
step("text_to_closed_window", lambda: wa.send_message(to=closed_contact, text="Still there?"))
step(
    "template_with_missing_parameter",
    lambda: wa.send_template(
        to=closed_contact,
        name="keep_helping",
        language=TemplateLanguage.ENGLISH_US,
        params=[BodyText.params(user="Ana", agent="Sam")],
    ),
)
step(
    "unknown_template",
    lambda: wa.send_template(
        to=closed_contact,
        name="no_such_template",
        language=TemplateLanguage.ENGLISH_US,
        params=[],
    ),
)
