"""The trivial addon with the real one's other per-flow hooks, doing nothing: dispatch cost."""


class TrivialHooks:
    def requestheaders(self, flow):
        flow.request.headers["Authorization"] = "Bearer fixed"
        flow.request.headers["Accept"] = "application/json"

    def response(self, flow):
        return None

    def error(self, flow):
        return None


addons = [TrivialHooks()]
