"""Conversation history rebuilt from Twilio's List/Get Message: the service, its HTTP API
and `sms-adapter history`."""
