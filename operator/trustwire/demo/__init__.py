"""The demo and its harness, apart from the operator: ``trustwire demo`` (:mod:`.run`,
:mod:`.rotate`), the rotation drill that plays the Deployment controller and kubelet
(:mod:`.drill`), the proofs over mounted material (:mod:`.proofs`) and the embedded API
emulator (:mod:`.emulator`). The operator never imports this package; the CLI's ``demo``
command and the tests do.
"""
