"""Helpers shared by the tests: the running API, workflow fakes, production and webhook parts."""
