"""The audit log: every /recommend answer and every erasure or access request, as JSON lines.

Append-only, under the workspace (`privacy.audit_log`), rotated by size (audit.log -> audit.log.1 ...,
`privacy.audit_backups` kept). No raw PII: a customer is named by a pseudonym, the keyed hash of
their customer id with the workspace's salt (features/suppression.py), never by the id, an e-mail or
a source id. After an erasure the identity map no longer holds the id, so the trail left behind
cannot be tied back to a person without the old id *and* the salt; the log itself is never rewritten.

Each call writes its lines with one `write` to a file opened with O_APPEND (no user-space buffer, no
fsync): nothing is lost when a worker stops, lines of several workers never interleave, and the
cost per request is one system call plus a `stat` to notice a rotation done by another worker.
"""

from __future__ import annotations

import atexit
import datetime as dt
import heapq
import json
import logging
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from cdp.config import PrivacySettings
from cdp.locks import exclusive_lock
from cdp.workspace import Workspace
from features.suppression import keyed_hash, load_or_create_salt, read_salt, workspace_path

log = logging.getLogger("cdp.audit")
PSEUDONYM_KIND = "customer"
PSEUDONYM_CACHE = 100_000


NEVER_ROTATED = 2**62
"""The requests' log's size limit: in effect none."""


class AuditLog:
    """One process's handle on a workspace's audit log; safe to share between threads."""

    def __init__(self, path: Path, max_bytes: int, backups: int, salt: bytes) -> None:
        self.path, self.max_bytes, self.backups, self._salt = path, max_bytes, backups, salt
        self._lock = threading.Lock()
        self._descriptor: int | None = None
        self._pseudonyms: dict[str, str] = {}

    @classmethod
    def open(cls, workspace: Workspace, privacy: PrivacySettings, requests: bool = False) -> AuditLog:
        """The answers' log (rotated by size), or with `requests` the requests' log (never rotated)."""
        if requests:
            return cls(workspace_path(workspace, privacy.requests_log), NEVER_ROTATED, 1,
                       load_or_create_salt(workspace, privacy))
        return cls(workspace_path(workspace, privacy.audit_log), privacy.audit_max_bytes, privacy.audit_backups,
                   load_or_create_salt(workspace, privacy))

    def pseudonym(self, customer_id: str) -> str:
        """The customer's keyed hash: the same in every entry, unreadable without the salt."""
        known = self._pseudonyms.get(customer_id)
        if known is None:
            known = keyed_hash(self._salt, PSEUDONYM_KIND, customer_id)
            if len(self._pseudonyms) >= PSEUDONYM_CACHE:
                self._pseudonyms.clear()
            self._pseudonyms[customer_id] = known
        return known

    def append(self, entries: Sequence[dict]) -> None:
        """Write the entries as JSON lines in one append; rotate when the file passed its size."""
        if not entries:
            return
        data = "".join(json.dumps(entry, separators=(",", ":"), default=str) + "\n" for entry in entries).encode()
        with self._lock:
            descriptor = self._current()
            os.write(descriptor, data)
            if os.fstat(descriptor).st_size >= self.max_bytes:
                self._rotate(descriptor)

    def close(self) -> None:
        with self._lock:
            if self._descriptor is not None:
                os.close(self._descriptor)
                self._descriptor = None

    def _current(self) -> int:
        """The open file, reopened when another process rotated it away (the path's inode changed)."""
        if self._descriptor is not None:
            try:
                if os.stat(self.path).st_ino == os.fstat(self._descriptor).st_ino:
                    return self._descriptor
            except FileNotFoundError:
                pass
            os.close(self._descriptor)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        return self._descriptor

    def _rotate(self, descriptor: int) -> None:
        """audit.log.(n-1) -> .n ... audit.log -> .1, under a lock file so two workers rotate once."""
        with exclusive_lock(self.path.with_name(self.path.name + ".lock")):
            try:
                if os.stat(self.path).st_ino != os.fstat(descriptor).st_ino:
                    return  # another worker rotated it already
            except FileNotFoundError:
                return
            for number in range(self.backups - 1, 0, -1):
                older = rotated_path(self.path, number)
                if older.exists():
                    os.replace(older, rotated_path(self.path, number + 1))
            os.replace(self.path, rotated_path(self.path, 1))
        os.close(descriptor)
        self._descriptor = None


def rotated_path(path: Path, number: int) -> Path:
    return path.with_name(f"{path.name}.{number}")


def audit_files(path: Path) -> list[Path]:
    """The log and its rotated files, oldest first."""
    rotated = sorted((p for p in path.parent.glob(path.name + ".*") if p.suffix[1:].isdigit()),
                     key=lambda p: int(p.suffix[1:]), reverse=True)
    return [*rotated, *([path] if path.exists() else [])]


def read_entries(workspace: Workspace, privacy: PrivacySettings, subject: str | None = None) -> Iterator[dict]:
    """Entries of both logs (answers, requests) oldest first, optionally only those about one pseudonym."""
    logs = [_entries(audit_files(workspace_path(workspace, path)), subject)
            for path in (privacy.audit_log, privacy.requests_log)]
    yield from heapq.merge(*logs, key=lambda entry: entry.get("time") or "")


def _entries(paths: Sequence[Path], subject: str | None) -> Iterator[dict]:
    for path in paths:
        with path.open() as handle:
            for line in handle:
                entry = json.loads(line)
                if subject is None or entry.get("subject") == subject:
                    yield entry


def subject_pseudonym(workspace: Workspace, privacy: PrivacySettings, customer_id: str) -> str | None:
    """A customer's pseudonym in the log (None when the workspace has no salt yet: nothing logged)."""
    salt = read_salt(workspace, privacy)
    return keyed_hash(salt, PSEUDONYM_KIND, customer_id) if salt is not None else None


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def recommendation_entries(answers: Sequence[dict], campaign_id: str, pseudonym, time: str) -> list[dict]:
    """One entry per answer: who (pseudonym), when, which models, what was decided; nothing else."""
    entries = []
    for answer in answers:
        customer = answer.get("customer_id")
        win_back = answer.get("win_back") or {}
        entries.append({
            "time": time, "event": "recommend", "subject": pseudonym(customer) if customer else None,
            "found": bool(answer.get("found")), "action": answer.get("next_best_action"),
            "channel": answer.get("next_best_channel"), "policy_action": answer.get("policy_action"),
            "win_back": win_back.get("action") if win_back.get("eligible") else None,
            "holdout": bool(answer.get("holdout")), "campaign_id": campaign_id,
            "model_versions": answer.get("model_versions") or {},
        })
    return entries


_LOGS: dict[Path, AuditLog] = {}
_LOGS_LOCK = threading.Lock()


def audit_log_for(workspace: Workspace, privacy: PrivacySettings, requests: bool = False) -> AuditLog:
    """This process's handle on the workspace's answers' log, or requests' log (opened once, closed at exit)."""
    path = workspace_path(workspace, privacy.requests_log if requests else privacy.audit_log)
    with _LOGS_LOCK:
        if path not in _LOGS:
            _LOGS[path] = AuditLog.open(workspace, privacy, requests)
        return _LOGS[path]


def audited_campaign(context: dict | None, default_campaign_id: str) -> str:
    """The campaign the holdout was hashed with: the request's campaign_id unless absent or null, as
    the policy decides it (`is not None`: an empty id, which the service refuses, would be hashed as
    given, so it is recorded as given)."""
    campaign = (context or {}).get("campaign_id")
    return default_campaign_id if campaign is None else campaign


def record_recommendations(engine, answers: Sequence[dict], context: dict | None) -> None:
    """The service's one call per /recommend response. A failure to write is logged, not raised:
    campaigns still get their answer, and the error says which file could not be written."""
    try:
        audit = audit_log_for(engine.workspace, engine.settings.privacy)
        campaign = audited_campaign(context, engine.settings.policy.default_campaign_id)
        audit.append(recommendation_entries(answers, campaign, audit.pseudonym, now_iso()))
    except OSError as error:
        log.error("audit log %s could not be written: %s", engine.settings.privacy.audit_log, error)


def record_request(workspace: Workspace, privacy: PrivacySettings, event: str, customer_id: str | None,
                   details: dict) -> None:
    """An erasure or access request: the pseudonym of the person (null for a request that named nobody,
    refused), when, the outcome and counts (no raw values)."""
    audit = audit_log_for(workspace, privacy, requests=True)
    subject = audit.pseudonym(customer_id) if customer_id is not None else None
    audit.append([{"time": now_iso(), "event": event, "subject": subject, **details}])


def consent_entries(updates: Sequence[dict], via: str, pseudonym, time: str, refused: Iterable[str] = (),
                    redirected: dict[str, str] | None = None, pending: Iterable[str] = ()) -> list[dict]:
    """One entry per update that changed a consent: who (pseudonym of the customer it was applied to),
    when, which channels were granted or withdrawn, and through what (`POST /events`, `cdp push`); none
    for a refused update, but for one refused as not in the online store yet (`pending`) its withdrawals,
    kept and applied at the next materialize. GDPR asks that a consent and its withdrawal can be shown; the
    push log alone kept no source and is deleted by an erasure."""
    refused, redirected, pending = set(refused), redirected or {}, set(pending)
    entries = []
    for update in updates:
        customer = update.get("customer_id")
        changes = {field.removeprefix("latest_").removesuffix("_consent"): "granted" if float(value) == 1 else "withdrawn"
                   for field, value in update.items()
                   if field.startswith("latest_") and field.endswith("_consent") and value is not None}
        if customer in pending:
            changes = {channel: change for channel, change in changes.items() if change == "withdrawn"}
        if changes and customer is not None and (customer not in refused or customer in pending):
            entry = {"time": time, "event": "consent", "subject": pseudonym(redirected.get(customer, customer)),
                     "changes": changes, "via": via}
            entries.append(entry | ({"applied": "at the next materialize"} if customer in pending else {}))
    return entries


def record_consent_changes(workspace: Workspace, privacy: PrivacySettings, updates: Sequence[dict], via: str,
                           refused: Iterable[str] = (), redirected: dict[str, str] | None = None,
                           pending: Iterable[str] = ()) -> None:
    """The service's and `cdp push`'s call after a push; a failure to write is logged, not raised (the
    consent took effect, and the push log holds it)."""
    try:
        audit = audit_log_for(workspace, privacy, requests=True)
        audit.append(consent_entries(updates, via, audit.pseudonym, now_iso(), refused, redirected, pending))
    except OSError as error:
        log.error("audit log %s could not be written: %s", privacy.requests_log, error)


@atexit.register
def _close_logs() -> None:
    for audit in _LOGS.values():
        audit.close()
