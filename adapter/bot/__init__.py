"""What bot authors import: Router, filters, Context, reply errors, status updates.

Nothing here knows HTTP, the store or Twilio's wire format."""
