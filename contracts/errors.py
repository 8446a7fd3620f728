"""The ``ApplicationError`` types that activities raise and workflows react to: refusals no retry
changes. Workflows name them in ``non_retryable_error_types``; activities raise them."""

# The facility refused the print job itself (a 4xx about the job): the order holds.
FACILITY_REJECTED = "FacilityRejected"
# The mail server refused a message for good (5xx to the recipient or the message).
MAIL_REJECTED = "MailRejected"
# A webhook delivery whose event row is gone: nothing to deliver, never retried.
EVENT_MISSING = "WebhookEventMissing"
# A webhook delivery attempt failed (receiver down, non-2xx): retried by the delivery workflow.
DELIVERY_FAILED = "WebhookDeliveryFailed"
