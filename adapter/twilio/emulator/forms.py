"""Reading url-encoded forms without python-multipart (which Starlette's `request.form()`
needs, and which the adapter does not depend on): Twilio only ever sends and accepts
application/x-www-form-urlencoded."""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.datastructures import ImmutableMultiDict
from starlette.requests import Request

Form = ImmutableMultiDict[str, str]


async def read_form(request: Request) -> Form:
    """The request's form, repeats kept; ValueError if the body is not a UTF-8 form."""
    body = await request.body()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("the form is not UTF-8") from None
    return ImmutableMultiDict(parse_qsl(text, keep_blank_values=True))
