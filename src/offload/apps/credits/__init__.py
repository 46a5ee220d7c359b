"""credits: a credit ledger (holds, allowances, pending settlement, analytics sync) kept
correct by four periodic tasks. Built only on offload's public API; see docs/credits.md.

Plug-in modules (loaded by the offload service, worker, beat and CLI): ``tasks``, ``api``
(``router``), ``schema`` (``upgrade``), ``cli`` (``register``). The ledger itself is
:mod:`.service`; the sweeps behind the tasks are :mod:`.sweeps`.
"""
