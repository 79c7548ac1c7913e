"""smpfleet: deploy SimpleX SMP relays with pyinfra (``pyinfra inventory.py deploy.py``).

Data flows one way: inventory data -> :mod:`settings` (all hosts validated first) ->
:mod:`keystore` on the operator's machine -> :mod:`relay` / :mod:`onion` operations on the hosts ->
:mod:`check` -> :mod:`publish`. Templates in ``templates/`` are shared with the Ansible roles.
"""
