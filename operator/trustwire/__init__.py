"""trustwire: a Kubernetes operator that wires mutual authentication between services.

Layers (lower never imports higher; enforced by ``tests/test_layers.py``):

* ``pki``, ``model``, ``plan``, ``render`` — pure: no I/O, no ``kopf``, no ``kubernetes``.
* ``k8s`` — the only code that talks to the API server.
* ``controller`` — gathers observed state through ``k8s``, asks ``plan`` what to do, applies it.
* ``handlers`` — thin kopf handlers that feed the controller.
* ``cli`` — ``trustwire run | demo | status | rotate | verify``.
"""

__version__ = "0.1.0"
