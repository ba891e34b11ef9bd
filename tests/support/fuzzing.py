"""Hypothesis profiles for the fuzz tests, chosen with HYPOTHESIS_PROFILE.

- ``default`` (``make test``, CI): a short, derandomized run, so that CI is reproducible
  and quick (~150 examples for the cheap properties, fewer for the costly ones).
- ``fuzz`` (``make fuzz``): the long campaign, 100,000 examples for the cheap properties
  (FUZZ_EXAMPLES=n to change it),
  randomized, with the example database kept in ``.hypothesis/`` so that a failure found
  once is replayed first on the next run.

Costly properties (a database import, a subprocess, a WSGI request) set their own
numbers for both profiles with :func:`examples`.
"""

import os

from hypothesis import HealthCheck, Phase, settings

_SUPPRESSED = [
    HealthCheck.too_slow,
    HealthCheck.data_too_large,
    HealthCheck.function_scoped_fixture,  # tmp_path / db: each example resets what it uses
    HealthCheck.large_base_example,
]

settings.register_profile(
    "default",
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=_SUPPRESSED,
)
settings.register_profile(
    "fuzz",
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "100000")),
    deadline=None,
    derandomize=False,
    print_blob=True,
    suppress_health_check=_SUPPRESSED,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "default")
settings.load_profile(PROFILE)


def examples(default: int, fuzz: int) -> int:
    """max_examples for a costly property: `default` in the default profile, `fuzz` in the
    fuzz campaign (scaled with FUZZ_EXAMPLES like the cheap properties' 100,000)."""
    if PROFILE == "fuzz":
        return max(1, fuzz * settings.default.max_examples // 100_000)
    return default
