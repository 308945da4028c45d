"""``trustwire serve``: the HTTPS server for parties outside the cluster.

It is stateless and reads and writes only through :class:`trustwire.k8s.client.Client`, so
several replicas can run behind one Service. Each feature (enrollment, discovery) is a
module whose ``routes(ctx)`` the application mounts (:data:`trustwire.server.app.FEATURES`).
"""
