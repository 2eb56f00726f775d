"""Development tools: the Twilio emulator and the dev console. `serve` never imports them."""
