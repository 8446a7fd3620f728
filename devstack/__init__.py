"""printflow's local stack: what ``make run`` runs and what the end-to-end tests start.

``devstack.stack.Stack`` manages the processes (Temporal dev server, worker, API, facility
simulator) and ``devstack.mailsink.MailSink`` keeps every e-mail instead of delivering it.
Nothing is imported here, so ``python -m devstack.mailsink`` runs the module only once.
"""
