"""Which rule covers a request's real destination: host names, the rule index, explanations."""
