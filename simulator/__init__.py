"""A local print facility: the other side of printflow's print submission contract.

It accepts print jobs the way a real partner does (bearer token, ``Idempotency-Key`` = order id,
one job per key whatever the retries; with ``max_jobs_per_second``, a 429 with ``Retry-After``
beyond that many per facility in any one second) and reports ``printed`` → ``shipped`` →
``delivered`` back to ``POST /v1/production/events`` after configurable delays, so orders move
on their own during ``make run``. The ``/_control/*`` endpoints let end-to-end tests stage what
is hard to get from a real partner: failures, rejections, lost responses and production issues.

State lives in memory; one process is one facility floor (it serves every configured token).
``python -m simulator`` runs it; ``simulator.app.create_app`` builds it in-process.
"""
