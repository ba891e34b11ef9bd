"""Getting bytes safely: CSV sources and the images they name (SPEC §4).

Callers import from here; which module of the package does what is its own business.
"""

from .client import Fetcher, FetchPolicy, FetchResult
from .guard import Resolver, is_public_address, resolve_host
from .local import fetch_reference

__all__ = [
    "FetchPolicy",
    "FetchResult",
    "Fetcher",
    "Resolver",
    "fetch_reference",
    "is_public_address",
    "resolve_host",
]
