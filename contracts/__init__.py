"""What workflows and activities exchange: inputs, results and error types, below both.

Imports only ``domain``; workflows, activities and the API import it, it imports none of them.
"""
