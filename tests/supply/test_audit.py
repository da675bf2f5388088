"""scripts/audit.py: a known vulnerability fails; an audit that could not run says it skipped."""

from __future__ import annotations

from typing import Any

from tests.supply import load_script

audit = load_script("audit")


def report(*dependencies: dict[str, Any]) -> dict[str, Any]:
    return {"dependencies": list(dependencies), "fixes": []}


def test_audit_fails_on_a_known_vulnerability() -> None:
    vuln = {"id": "GHSA-aaaa-bbbb-cccc", "fix_versions": ["3.14.6"], "aliases": []}
    code, lines = audit.verdict(
        report(
            {"name": "aiohttp", "version": "3.14.5", "vulns": [vuln]},
            {"name": "yarl", "version": "1.25.1", "vulns": []},
        )
    )
    assert code == 1
    assert "audit: aiohttp 3.14.5: GHSA-aaaa-bbbb-cccc (fixed in 3.14.6)" in lines
    assert "requirements/audit-ignore.txt" in lines[-1]


def test_audit_passes_when_nothing_is_known() -> None:
    code, lines = audit.verdict(
        report(
            {"name": "aiohttp", "version": "3.14.5", "vulns": []},
            {"name": "yarl", "version": "1.25.1", "vulns": []},
        )
    )
    assert (code, lines) == (0, ["audit: no known vulnerabilities in 2 pins"])


def test_audit_says_it_skipped_when_no_pin_could_be_audited() -> None:
    reason = "Dependency not found on PyPI and could not be audited: yarl (1.25.1)"
    code, lines = audit.verdict(
        report({"name": "yarl", "skip_reason": reason}, {"name": "zipp", "skip_reason": reason})
    )
    assert code == 0
    assert len(lines) == 1
    assert lines[0].startswith("audit: skipped:")
    assert "2 pins" in lines[0]


def test_audit_names_each_pin_it_could_not_audit_among_audited_ones() -> None:
    reason = "Dependency not found on PyPI and could not be audited: zipp (4.1.2)"
    code, lines = audit.verdict(
        report(
            {"name": "yarl", "version": "1.25.1", "vulns": []},
            {"name": "zipp", "skip_reason": reason},
        )
    )
    assert code == 0
    assert lines == [f"audit: not audited: {reason}", "audit: no known vulnerabilities in 1 pins"]


def test_audit_ignore_list_is_the_first_word_of_each_line() -> None:
    text = "# accepted\n\nGHSA-aaaa-bbbb-cccc  # not reachable: we never parse X\nPYSEC-2024-1\n"
    assert audit.ignored_ids(text) == ["GHSA-aaaa-bbbb-cccc", "PYSEC-2024-1"]
