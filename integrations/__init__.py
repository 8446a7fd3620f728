"""Clients of the systems outside printflow: the facilities' API (``facility``), the SMTP relay
(``mail``) and merchants' webhook receivers (``webhooks``).

Each is a plain async client that gets its connection (an ``httpx.AsyncClient``, the SMTP
settings) from its caller and raises exceptions of its own; activities and the API call them
and decide what a failure means for them. Nothing here knows Temporal, workflows or the API.
"""
