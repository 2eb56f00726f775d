"""Reading url-encoded forms without python-multipart (which Starlette's `request.form()`
needs, and which the adapter does not depend on): Twilio only ever sends and accepts
application/x-www-form-urlencoded."""

from __future__ import annotations

from starlette.datastructures import ImmutableMultiDict
from starlette.requests import Request

from adapter.twilio.webhook_form import parse_form

Form = ImmutableMultiDict[str, str]


async def read_form(request: Request) -> Form:
    """The request's form, repeats kept; ValueError (`WebhookFormError`) if the body is
    not a UTF-8 form, percent-escapes included."""
    return ImmutableMultiDict(parse_form(await request.body()))
