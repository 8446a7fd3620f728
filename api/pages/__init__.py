"""The customer-facing HTML pages: the personalization form behind each e-mailed link."""
