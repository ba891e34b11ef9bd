"""Getting bytes safely: CSV sources and the images they name (SPEC §4).

Everything a CSV names is untrusted, so every fetch is bounded in time and size, follows
redirects itself (each hop is checked again), and refuses to talk to private or local
networks unless told otherwise. One module per job:

- `client`: `Fetcher` (redirects, retries, the size cap) and its `FetchPolicy`;
- `guard`: the SSRF guard, the only way the client opens a connection;
- `deadline`: one deadline for each request and one for each whole fetch;
- `decoding`: content codings, decoded a bounded step at a time;
- `local`: CSV image references, and the paths beside a local CSV;
- `errors`: `FetchError`, what any of them raises, with an image reason code.

No Django here: callers turn settings into a `FetchPolicy`. They import from this
package, not from its modules, so that which module does what stays its own business.
"""

from .client import Fetcher, FetchPolicy, FetchResult
from .errors import FetchError
from .guard import Resolver, is_public_address, resolve_host
from .local import fetch_reference

__all__ = [
    "FetchError",
    "FetchPolicy",
    "FetchResult",
    "Fetcher",
    "Resolver",
    "fetch_reference",
    "is_public_address",
    "resolve_host",
]
