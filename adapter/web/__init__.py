"""The HTTP face of the adapter: the Starlette app, Twilio's webhooks, the operator API,
metrics, and the one auth middleware and error handler they share."""
