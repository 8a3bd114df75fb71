"""The dependency audit's verdicts (scripts/audit_deps.py, ``make audit``) on pip-audit JSON reports of the shape
pip-audit 2.10 writes: a report where nothing could be audited is NOT RUN (never a pass), findings without an
answer fail, answered ones pass with their reason, and an answer without a reason is refused."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from scripts.audit_deps import ConfigError, judge, main, read_ignores

NOTHING_AUDITED = {
    "dependencies": [
        {"name": "jinja2", "skip_reason": "Dependency not found on PyPI and could not be audited: jinja2 (3.1.4)"},
        {"name": "numpy", "skip_reason": "Dependency not found on PyPI and could not be audited: numpy (2.4.6)"},
    ],
    "fixes": [],
}
FINDING = {
    "id": "GHSA-q2x7-8rv6-6q7h",
    "fix_versions": ["3.1.5"],
    "aliases": ["CVE-2024-56326"],
    "description": "sandbox breakout through indirect reference to format method",
}
WITH_A_FINDING = {
    "dependencies": [
        {"name": "jinja2", "version": "3.1.4", "vulns": [FINDING]},
        {"name": "numpy", "version": "2.4.6", "vulns": []},
        {"name": "private-pkg", "skip_reason": "Dependency not found on PyPI and could not be audited"},
    ],
    "fixes": [],
}


Audit = Callable[[dict[str, Any], str], tuple[int, str]]


@pytest.fixture
def audit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Audit:
    """``audit(report, ignore_file_text)``: the script's exit status and output on that report."""

    def run(report: dict[str, Any], ignore: str) -> tuple[int, str]:
        (tmp_path / "report.json").write_text(json.dumps(report))
        (tmp_path / "ignore").write_text(ignore)
        status = main(["--from-json", str(tmp_path / "report.json"), "--ignore-file", str(tmp_path / "ignore")])
        return status, capsys.readouterr().out

    return run


def test_a_report_that_audited_nothing_is_not_run_and_not_a_pass(audit: Audit) -> None:
    status, out = audit(NOTHING_AUDITED, "")
    assert status == 0
    assert out.startswith("dependency audit: NOT RUN (vulnerability database unreachable:")
    assert "ok" not in out and "No known" not in out


def test_a_finding_without_an_answer_fails_naming_it_and_its_fix(audit: Audit) -> None:
    status, out = audit(WITH_A_FINDING, "# nothing answered yet\n")
    assert status == 1
    assert out.startswith("dependency audit: FAILED (1 finding(s) without an answer; 2 package(s) audited")
    assert "FINDING   jinja2 3.1.4: GHSA-q2x7-8rv6-6q7h / CVE-2024-56326; fixed in: 3.1.5" in out
    assert "not audited: 1 package(s)" in out and "private-pkg" in out


def test_an_answered_finding_passes_with_its_reason_by_any_of_its_ids(audit: Audit) -> None:
    ignore = "cve-2024-56326 templates are ours, never user input; upgrade with the next pin bump\n"
    status, out = audit(WITH_A_FINDING, ignore)
    assert status == 0
    assert out.startswith("dependency audit: ok (2 package(s) audited against the report, 1 not audited; 1 finding")
    assert "answered  jinja2 3.1.4" in out and "templates are ours" in out


def test_an_answer_no_longer_reported_is_noted(audit: Audit) -> None:
    status, out = audit(WITH_A_FINDING, "CVE-2024-56326 ours\nPYSEC-2020-1 fixed long ago\n")
    assert status == 0
    assert "note: PYSEC-2020-1 is in the ignore file but was not reported" in out


def test_an_answer_without_a_reason_is_refused(audit: Audit, tmp_path: Path) -> None:
    (tmp_path / "ignore").write_text("GHSA-q2x7-8rv6-6q7h\n")
    with pytest.raises(ConfigError, match="ignore:1: GHSA-q2x7-8rv6-6q7h has no reason"):
        read_ignores(tmp_path / "ignore")
    status, out = audit(WITH_A_FINDING, "GHSA-q2x7-8rv6-6q7h   # a comment is not a reason\n")
    assert status == 2
    assert out.startswith("dependency audit: ERROR (ignore:1: GHSA-q2x7-8rv6-6q7h has no reason")


def test_the_repository_ignore_file_is_well_formed_and_judges_a_clean_report() -> None:
    ignores = read_ignores(Path(__file__).resolve().parents[1] / ".pip-audit-ignore")
    clean = {"dependencies": [{"name": "numpy", "version": "2.4.6", "vulns": []}]}
    assert judge(clean, ignores, "pypi").status == 0
