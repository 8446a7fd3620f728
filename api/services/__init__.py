"""What the API does, one module per resource; routes call these, never the other way."""
