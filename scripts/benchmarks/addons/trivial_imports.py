"""The trivial addon, having imported everything the real one imports: the cost of the imports."""

import mitm_oauth.mitm.addon  # noqa: F401 - the point is the import


class TrivialImports:
    def requestheaders(self, flow):
        flow.request.headers["Authorization"] = "Bearer fixed"
        flow.request.headers["Accept"] = "application/json"


addons = [TrivialImports()]
