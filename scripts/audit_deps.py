"""Dependency audit of the installed environment (``make audit``, part of ``make test`` and so of CI).

Runs pip-audit on the environment of the Python that runs this script (the project's virtualenv: the pinned set
``make install`` put there, transitive packages included; the editable candlecast itself is skipped) against
PyPI's vulnerability data, and against OSV when PyPI audited nothing. It says one of three things, plainly:

- ``dependency audit: NOT RUN (vulnerability database unreachable: <reason>)``, exit 0: no service answered for
  any package (no network, a registry mirror without the per-version JSON API: pip-audit then reports every
  package as "not found on PyPI" and "No known vulnerabilities found", which is not a pass). CI stays green.
- ``dependency audit: ok (...)``, exit 0: N packages audited, every finding answered in ``.pip-audit-ignore``;
  packages that could not be audited are counted and named.
- ``dependency audit: FAILED (...)``, exit 1: findings with no answer, each printed with its fix versions.

``.pip-audit-ignore`` (repository root): one finding a line, ``<vulnerability id> <reason>``; the id may be any of
the finding's ids or aliases (PYSEC-, GHSA-, CVE-); a line without a reason is an error (exit 2); ``#`` starts a
comment. Usage: ``python scripts/audit_deps.py [--ignore-file PATH] [--from-json REPORT]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("pypi", "osv")
TIMEOUT_S = 150  # the whole pip-audit run, per service (at most 5 minutes of CI); past it: unreachable
REQUEST_TIMEOUT_S = 10
_NETWORK_WORDS = (
    "ConnectionError",
    "ConnectTimeout",
    "ReadTimeout",
    "Timeout",
    "NameResolution",
    "Name or service not known",
    "Temporary failure in name resolution",
    "Max retries exceeded",
    "Network is unreachable",
    "SSLError",
    "ServiceError",
    "HTTPError",
)


class ConfigError(Exception):
    """The ignore file is malformed (exit 2)."""


@dataclass
class Outcome:
    """What one audit said: the line to print, the lines under it, and the exit status."""

    status: int
    line: str
    details: list[str] = field(default_factory=list)


def read_ignores(path: Path) -> dict[str, str]:
    """``{vulnerability id: reason}`` from the ignore file (absent: none). Every entry needs a reason."""
    if not path.exists():
        return {}
    out: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        vuln_id, _, reason = text.partition(" ")
        if not reason.strip():
            raise ConfigError(f"{path.name}:{number}: {vuln_id} has no reason; write '<id> <why it is accepted>'")
        out[vuln_id.strip().upper()] = reason.strip()
    return out


def audited_count(report: dict[str, Any]) -> int:
    """How many packages of a pip-audit JSON report were looked up (had no skip reason)."""
    return sum("skip_reason" not in dep for dep in report.get("dependencies", []))


def judge(report: dict[str, Any], ignores: dict[str, str], service: str) -> Outcome:
    """The verdict on one pip-audit JSON report in which at least one package was audited."""
    deps = report.get("dependencies", [])
    skipped = [dep for dep in deps if "skip_reason" in dep]
    audited = len(deps) - len(skipped)
    answered: list[str] = []
    unanswered: list[str] = []
    used: set[str] = set()
    for dep in deps:
        for vuln in dep.get("vulns", []):
            ids = [vuln["id"], *vuln.get("aliases", [])]
            reason_id = next((i for i in ids if i.upper() in ignores), None)
            name = f"{dep['name']} {dep['version']}: {' / '.join(ids)}"
            if reason_id is not None:
                used.add(reason_id.upper())
                answered.append(f"  answered  {name} ({ignores[reason_id.upper()]})")
            else:
                fixes = ", ".join(vuln.get("fix_versions", [])) or "no fixed version yet"
                unanswered.append(f"  FINDING   {name}; fixed in: {fixes}")
    details = unanswered + answered
    if skipped:
        names = ", ".join(f"{d['name']}" for d in skipped[:8]) + (" ..." if len(skipped) > 8 else "")
        details.append(f"  not audited: {len(skipped)} package(s) the {service} service did not know ({names})")
    details += [f"  note: {i} is in the ignore file but was not reported" for i in sorted(set(ignores) - used)]
    counts = f"{audited} package(s) audited against {service}, {len(skipped)} not audited"
    if unanswered:
        return Outcome(
            1,
            f"dependency audit: FAILED ({len(unanswered)} finding(s) without an answer; {counts}): upgrade, or "
            "add '<id> <reason>' to .pip-audit-ignore",
            details,
        )
    return Outcome(0, f"dependency audit: ok ({counts}; {len(answered)} finding(s) answered)", details)


def not_run(reasons: list[str]) -> Outcome:
    return Outcome(0, f"dependency audit: NOT RUN (vulnerability database unreachable: {'; '.join(reasons)})")


def run_pip_audit(service: str) -> tuple[dict[str, Any] | None, str]:
    """pip-audit's JSON report on this interpreter's environment, or None and why it gave none."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        command = [sys.executable, "-m", "pip_audit", "--vulnerability-service", service, "--skip-editable",
                   "--progress-spinner", "off", "--timeout", str(REQUEST_TIMEOUT_S), "--format", "json",
                   "--output", str(report)]  # fmt: skip
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            return None, f"{service}: no answer within {TIMEOUT_S} s"
        if report.exists() and report.stat().st_size:
            return json.loads(report.read_text(encoding="utf-8")), ""
        lines = [line.strip() for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        last = lines[-1].removeprefix("requests.exceptions.") if lines else f"exit {done.returncode}, no report"
        if done.returncode != 0 and not any(word in last for word in _NETWORK_WORDS):
            raise RuntimeError(f"pip-audit failed ({service}): {last[:300]}")
        return None, f"{service}: {last[:160]}"


def audit(ignores: dict[str, str]) -> Outcome:
    """Try each service in turn; the first that audits at least one package decides."""
    reasons = []
    for service in SERVICES:
        report, why = run_pip_audit(service)
        if report is None:
            reasons.append(why)
            continue
        if audited_count(report):
            return judge(report, ignores, service)
        total = len(report.get("dependencies", []))
        reasons.append(f"{service}: none of {total} packages could be audited (pip-audit: 'not found' for each)")
    return not_run(reasons)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--ignore-file", type=Path, default=ROOT / ".pip-audit-ignore")
    parser.add_argument("--from-json", type=Path, help="judge this pip-audit JSON report instead of running it")
    args = parser.parse_args(argv)
    try:
        ignores = read_ignores(args.ignore_file)
    except ConfigError as exc:
        print(f"dependency audit: ERROR ({exc})")
        return 2
    if args.from_json:
        report = json.loads(args.from_json.read_text(encoding="utf-8"))
        outcome = judge(report, ignores, "the report") if audited_count(report) else not_run(["the report: none"])
    else:
        outcome = audit(ignores)
    print(outcome.line)
    for line in outcome.details:
        print(line)
    return outcome.status


if __name__ == "__main__":
    sys.exit(main())
