"""What operators see: redaction, the JSON event log, token exchanges, status."""
