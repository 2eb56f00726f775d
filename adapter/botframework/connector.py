"""The Bot Connector API subset a bot calls to reply, under its serviceUrl.

    POST   {serviceUrl}/v3/conversations                                  start one (CreateConversation)
    POST   {serviceUrl}/v3/conversations/{conversationId}/activities      SendToConversation
    POST   {serviceUrl}/v3/conversations/{conversationId}/activities/{id} ReplyToActivity
    PUT    .../activities/{id}, DELETE .../activities/{id}                405: a text cannot be edited or unsent

serviceUrl is `SMS_ADAPTER_PUBLIC_URL/botframework/{secret}`, one secret per bot. Every
answer is JSON; refusals are Bot Framework ErrorResponses. Ids arrive URL-encoded
(`%2B15551234567`); the server decodes the path before routing, so they are used as sent.
A sent message answers 200 with its id: Microsoft's SDK fails on 204.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from adapter.botframework.bridge import BotFrameworkBridge, RemoteBot
from adapter.botframework.connector_path import PATH_PREFIX
from adapter.botframework.errors import ConnectorError, bad_request, error_response, not_found

logger = logging.getLogger("adapter.botframework")

Operation = Callable[[Request, BotFrameworkBridge, RemoteBot], Awaitable[dict[str, Any]]]
_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def routes() -> list[BaseRoute]:
    """Mounted by `create_app`; the bridge is `request.app.state.channel.botframework`."""
    return [
        Mount(
            PATH_PREFIX + "/{secret}",
            routes=[
                Route("/v3/conversations", _endpoint(create_conversation), methods=["POST"]),
                Route(
                    "/v3/conversations/{conversation_id}/activities",
                    _endpoint(send_to_conversation),
                    methods=["POST"],
                ),
                Route(
                    "/v3/conversations/{conversation_id}/activities/{activity_id}",
                    _endpoint(reply_to_activity),
                    methods=_ALL_METHODS,
                ),
                Route("/{rest:path}", _endpoint(unsupported), methods=_ALL_METHODS),
            ],
        )
    ]


async def create_conversation(
    request: Request, bridge: BotFrameworkBridge, bot: RemoteBot
) -> dict[str, Any]:
    return await bridge.create_conversation(bot, await _json_object(request))


async def send_to_conversation(
    request: Request, bridge: BotFrameworkBridge, bot: RemoteBot
) -> dict[str, Any]:
    conversation_id = request.path_params["conversation_id"]
    activity = await _json_object(request)
    return {"id": await bridge.send(bot, conversation_id, activity)}


async def reply_to_activity(
    request: Request, bridge: BotFrameworkBridge, bot: RemoteBot
) -> dict[str, Any]:
    if request.method in {"PUT", "DELETE"}:
        verb = "edited" if request.method == "PUT" else "deleted"
        raise ConnectorError(405, "MethodNotAllowed", f"an SMS cannot be {verb} once it is sent")
    if request.method != "POST":
        raise _not_supported(request.method)
    conversation_id = request.path_params["conversation_id"]
    activity = await _json_object(request)
    # An id we never issued (a proactive message's) makes this a SendToConversation;
    # either way the text goes to the person of our record of the conversation.
    reply_to = request.path_params["activity_id"]
    return {"id": await bridge.send(bot, conversation_id, activity, reply_to_id=reply_to)}


async def unsupported(
    request: Request, bridge: BotFrameworkBridge, bot: RemoteBot
) -> dict[str, Any]:
    raise not_found(
        f"the SMS channel does not serve {request.method} /{request.path_params['rest']}: "
        "it sends activities and starts conversations, nothing else"
    )


def _not_supported(method: str) -> ConnectorError:
    return ConnectorError(
        405, "MethodNotAllowed", f"the SMS channel does not support {method} here"
    )


def _endpoint(operation: Operation) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        bridge: BotFrameworkBridge = request.app.state.channel.botframework
        try:
            bot = bridge.bot_for_secret(request.path_params["secret"])
            await bridge.authenticate(bot, request.headers.get("Authorization"))
            return JSONResponse(await operation(request, bridge, bot))
        except ConnectorError as error:
            if error.status >= 500 and not error.logged:
                logger.error("connector call refused: %s", error.message)
            else:
                logger.info("connector call refused (%s): %s", error.status, error.message)
            return error_response(error)

    return endpoint


async def _json_object(request: Request) -> Mapping[str, Any]:
    try:
        data = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: nested thousands deep ([[[[...), which json cannot take apart.
        raise bad_request("the body is not JSON", "BadSyntax") from None
    if not isinstance(data, dict):
        raise bad_request("the body must be a JSON object", "BadSyntax")
    return data
