"""trustwire: a Kubernetes operator that wires mutual authentication between services.

Layers (lower never imports higher; enforced by ``tests/test_layers.py``):

* ``pki``, ``model``, ``plan``, ``render`` — pure: no I/O, no ``kubernetes``.
* ``k8s`` — the only code that talks to the API server.
* ``controller`` — lists and watches through ``k8s``, asks ``plan`` what to do, applies it.
* ``cli`` — ``trustwire run | demo | status | rotate | verify``.
"""

__version__ = "0.1.0"
