"""Dependency audit for CI: pip-audit over the project's virtualenv, offline-safe.

pip-audit asks a vulnerability service about every installed package: PyPI's JSON API
(its default) or OSV. Where neither answers (this workplace reaches a PyPI mirror for
installs, whose JSON API answers 404 for every package, and no OSV), pip-audit reports
"No known vulnerabilities found" while having audited nothing. This script reads its JSON
output and says which case it is:

- some packages audited, none vulnerable: "audit: no known vulnerabilities ..." (exit 0);
- any known vulnerability: lists them (exit 1);
- nothing could be looked up, or pip-audit could not run: "audit unavailable: ..." (exit 0,
  on purpose: an unreachable service must not block CI; SECURITY.md says so).
"""

import json
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent
TIMEOUT = 180


def main() -> int:
    command = [str(BIN / "pip-audit"), "--local", "--format", "json", "--progress-spinner", "off"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"audit unavailable: pip-audit did not run ({exc})")
        return 0
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"audit unavailable: pip-audit failed (exit {result.returncode}): {last[:200]}")
        return 0
    dependencies = report.get("dependencies", [])
    audited = [d for d in dependencies if "skip_reason" not in d]
    vulnerable = [d for d in audited if d.get("vulns")]
    if vulnerable:
        for dep in vulnerable:
            for vuln in dep["vulns"]:
                fixes = ", ".join(vuln.get("fix_versions", [])) or "no fix yet"
                print(f"VULNERABLE {dep['name']} {dep['version']}: {vuln['id']} (fixed in {fixes})")
        return 1
    if not audited:
        print(
            f"audit unavailable: the vulnerability service answered for none of the "
            f"{len(dependencies)} installed packages (e.g. "
            f"{dependencies[0].get('skip_reason', '?') if dependencies else 'none installed'})"
        )
        return 0
    skipped = len(dependencies) - len(audited)
    print(
        f"audit: no known vulnerabilities in {len(audited)} packages"
        + (f" ({skipped} could not be looked up)" if skipped else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
