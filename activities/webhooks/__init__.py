"""Webhooks to merchants, in two parts (the signature scheme and the POST itself are
``integrations.webhooks``):

- ``emitter``: which order changes become events, stored with deterministic ids and queued on
  the order's delivery workflow;
- ``delivery``: the activities that make one signed POST, record it, and record giving up.

The order workflow never waits for a receiver: emitting is two database writes and one signal,
and the delivery runs in its own workflow.
"""
