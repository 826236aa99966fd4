"""The floor for any addon: a hook that only sets two fixed headers."""


class Trivial:
    def requestheaders(self, flow):
        flow.request.headers["Authorization"] = "Bearer fixed"
        flow.request.headers["Accept"] = "application/json"


addons = [Trivial()]
