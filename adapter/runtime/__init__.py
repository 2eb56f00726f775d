"""Process wiring: settings (each declared once, typed) and the composition root that
builds the store, the Twilio client and the workers from them."""
