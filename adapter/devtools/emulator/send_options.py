"""Send Message's options as the emulator reads them from the form, with Twilio's errors
for invalid values, and what each does to the message: smart encoding, templates."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from adapter.devtools.emulator import errors
from adapter.devtools.emulator.config import EmulatorConfig
from adapter.devtools.emulator.errors import TwilioApiError
from adapter.devtools.emulator.forms import Form
from adapter.twilio.send_options import (
    MAX_SCHEDULE_AHEAD,
    MAX_VALIDITY_SECONDS,
    MIN_SCHEDULE_AHEAD,
    MIN_VALIDITY_SECONDS,
)

_APPLICATION_SID = re.compile(r"AP[0-9a-fA-F]{32}")
_CONTENT_SID = re.compile(r"HX[0-9a-fA-F]{32}")
_DECIMAL = re.compile(r"-?\d+(\.\d+)?")
_PLACEHOLDER = re.compile(r"\{\{\s*([^{}\s]+)\s*\}\}")


@dataclass(frozen=True)
class RequestedOptions:
    """The options of one Send Message request, checked."""

    validity_period: int | None = None
    max_price: str | None = None
    smart_encoded: bool | None = None
    shorten_urls: bool | None = None
    send_as_mms: bool | None = None
    send_at: datetime | None = None
    content_sid: str | None = None
    content_variables: dict[str, Any] | None = None
    application_sid: str | None = None
    # Where statuses go when the request named a TwiML App and no StatusCallback.
    application_callback: str | None = field(default=None, repr=False)

    def resource_fields(self) -> dict[str, Any]:
        """The options as the emulator shows them on the Message resource (an emulator
        addition: Twilio's resource does not echo them), only those given."""
        shown: dict[str, Any] = {
            "validity_period": self.validity_period,
            "max_price": self.max_price,
            "smart_encoded": self.smart_encoded,
            "shorten_urls": self.shorten_urls,
            "send_as_mms": self.send_as_mms,
            "schedule_type": "fixed" if self.send_at is not None else None,
            "send_at": self.send_at.strftime("%Y-%m-%dT%H:%M:%SZ") if self.send_at else None,
            "content_sid": self.content_sid,
            "content_variables": (
                json.dumps(self.content_variables) if self.content_variables is not None else None
            ),
            "application_sid": self.application_sid,
        }
        return {name: value for name, value in shown.items() if value is not None}


def read_options(
    form: Form, config: EmulatorConfig, *, messaging_service_sid: str | None, now: datetime
) -> RequestedOptions:
    """The request's options; TwilioApiError (400, Twilio's code) for an invalid one."""
    validity = _validity(form)
    price = _text(form, "MaxPrice")
    if price and not _DECIMAL.fullmatch(price):
        raise _invalid("MaxPrice", price)
    shorten = _boolean(form, "ShortenUrls")
    if shorten and messaging_service_sid is None:
        raise TwilioApiError(
            400,
            errors.INVALID_PARAMETER,
            "ShortenUrls requires a MessagingServiceSid with Link Shortening configured.",
        )
    content_sid, variables = _content(form, config)
    application_sid = _text(form, "ApplicationSid") or None
    callback = None
    if application_sid is not None:
        if not _APPLICATION_SID.fullmatch(application_sid):
            raise _invalid("ApplicationSid", application_sid)
        if application_sid not in config.applications:
            raise TwilioApiError(
                400,
                errors.APPLICATION_NOT_FOUND,
                f"The ApplicationSid {application_sid} is not a TwiML App of this account.",
            )
        callback = config.applications[application_sid]
    return RequestedOptions(
        validity_period=validity,
        max_price=price or None,
        smart_encoded=_boolean(form, "SmartEncoded"),
        shorten_urls=shorten,
        send_as_mms=_boolean(form, "SendAsMms"),
        send_at=_send_at(form, messaging_service_sid, now),
        content_sid=content_sid,
        content_variables=variables,
        application_sid=application_sid,
        application_callback=callback,
    )


def rendered_template(config: EmulatorConfig, options: RequestedOptions) -> str | None:
    """The body a content template delivers: its {{placeholders}} filled from the
    variables (one without a value stays as written); None without a template."""
    if options.content_sid is None:
        return None
    template = config.content_templates[options.content_sid]
    variables = options.content_variables or {}

    def fill(match: re.Match[str]) -> str:
        value = variables.get(match[1])
        return str(value) if value is not None else match[0]

    return _PLACEHOLDER.sub(fill, template)


def _validity(form: Form) -> int | None:
    text = _text(form, "ValidityPeriod")
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not MIN_VALIDITY_SECONDS <= value <= MAX_VALIDITY_SECONDS:
        raise TwilioApiError(
            400,
            errors.INVALID_VALIDITY_PERIOD,
            "Validity period can only be set to integers between 1 and 36,000 seconds.",
        )
    return value


def _send_at(form: Form, service: str | None, now: datetime) -> datetime | None:
    schedule_type = _text(form, "ScheduleType")
    text = _text(form, "SendAt")
    if not schedule_type:
        return None  # Twilio ignores SendAt without ScheduleType: the message goes now
    if schedule_type != "fixed":
        raise _invalid("ScheduleType", schedule_type)
    if not text:
        raise TwilioApiError(
            400, errors.SEND_AT_MISSING, "SendAt timestamp is missing (ScheduleType is fixed)."
        )
    if service is None:
        raise TwilioApiError(
            400, errors.SCHEDULE_NEEDS_SERVICE, "MessagingServiceSid is required to schedule."
        )
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise _unschedulable()
    if not MIN_SCHEDULE_AHEAD <= moment - now <= MAX_SCHEDULE_AHEAD:
        raise _unschedulable()
    return moment


def _content(form: Form, config: EmulatorConfig) -> tuple[str | None, dict[str, Any] | None]:
    sid = _text(form, "ContentSid") or None
    raw_variables = _text(form, "ContentVariables")
    if raw_variables and sid is None:
        raise TwilioApiError(
            400,
            errors.CONTENT_SID_REQUIRED,
            "A ContentSid must be specified if ContentVariables are provided in the request.",
        )
    if sid is None:
        return None, None
    if not _CONTENT_SID.fullmatch(sid) or sid not in config.content_templates:
        raise TwilioApiError(400, errors.CONTENT_SID_INVALID, "The ContentSid is Invalid.")
    if not raw_variables:
        return sid, None
    try:
        variables = json.loads(raw_variables)
    except ValueError:
        variables = None
    if not isinstance(variables, dict) or any(v in (None, "") for v in variables.values()):
        raise TwilioApiError(
            400, errors.CONTENT_VARIABLES_INVALID, "The ContentVariables Parameter is invalid."
        )
    return sid, variables


def _boolean(form: Form, name: str) -> bool | None:
    text = _text(form, name).lower()
    if not text:
        return None
    if text not in {"true", "false"}:
        raise _invalid(name, text)
    return text == "true"


def _text(form: Form, name: str) -> str:
    return form.get(name, "").strip()


def _invalid(name: str, value: str) -> TwilioApiError:
    return TwilioApiError(
        400, errors.INVALID_PARAMETER, f"Invalid parameter: {name} {value!r} is not valid."
    )


def _unschedulable() -> TwilioApiError:
    return TwilioApiError(
        400,
        errors.SCHEDULE_OUT_OF_WINDOW,
        "Scheduling does not support this timestamp: SendAt must be an ISO 8601 UTC time "
        f"from {int(MIN_SCHEDULE_AHEAD.total_seconds())} seconds to "
        f"{MAX_SCHEDULE_AHEAD.days} days in the future.",
    )
