"""trustwire: a Kubernetes operator that wires mutual authentication between services.

Layers (lower never imports higher; ``[tool.importlinter]`` in pyproject.toml is the contract,
checked by ``lint-imports``):

* ``pki``, ``model``, ``plan``, ``render``, ``names``, ``times`` — pure: no I/O, no ``kubernetes``.
* ``k8s`` — the only code that talks to the API server.
* ``controller`` — lists and watches through ``k8s``, asks ``plan`` what to do, applies it.
* ``metrics`` and ``inspection`` — read the controller's state and mounted material; beside the controller.
* ``runtime`` — starts the controller and its liveness endpoint.
* ``demo`` — the demo, its rotation drill, proofs and the API emulator; the operator never imports it.
* ``cli`` — ``trustwire run | demo | status | rotate | verify``.
"""

__version__ = "0.1.0"
