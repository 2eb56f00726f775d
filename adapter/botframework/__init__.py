"""The Bot Framework channel: Bot Framework bots, unchanged, answering texts.

A route's bot may be a Bot Framework bot's messaging endpoint
(`SMS_ADAPTER_BOTS=botframework+http://127.0.0.1:3978/api/messages`). The adapter then
plays Microsoft's hosted SMS channel for it: each text is posted to the bot as an
activity (`bridge`), and the bot replies through the Bot Connector API subset served
under its serviceUrl (`connector`), rendered for SMS (`render`) and sent through the
outbox like any reply.

    endpoint.py        the `botframework+URL` spec
    remote_bot.py      the Router standing for the bot in the route table
    bridge.py          posting texts to the bot; the connector's operations
    connector.py       the HTTP routes under the serviceUrl
    connector_path.py  the per-bot secret in the serviceUrl
    records.py         which of our numbers talks to whom, for each bot
    render.py          activities as SMS text and media
    bot_client.py      one POST to the bot, and its outcome
    tokens.py          client-credentials tokens (auth mode jwt)
    jwt_verify.py      checking bearer tokens on connector calls (auth mode jwt)

This module imports nothing, so settings and the route table can use the light modules
(`endpoint`) without pulling in the server side.
"""
