from tests.production.support import full_api

__all__ = ["full_api"]
