from tests.helpers.production import full_api

__all__ = ["full_api"]
