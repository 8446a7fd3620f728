"""Every side effect the workflows call, as methods of classes that get their clients in
``__init__`` (the worker wires them once): the read models, print submissions, e-mails,
personalization links and webhooks. The outside systems themselves are ``integrations``."""
