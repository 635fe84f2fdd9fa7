"""What the service does per request, without HTTP: resolve references, read online features, score,
apply the policy, explain. The BentoML class only parses, calls this, and formats.

Loaded once per worker (`RecommendationEngine.load`); `reload` swaps in new champions atomically so
requests in flight finish on the models they started with, and announces the reload in the workspace's
reload marker: every other worker's engine notices it (one `os.stat` per request) and reloads too.
"""

from __future__ import annotations

import datetime as dt
import gc
import itertools
import json
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cdp.config import Settings
from cdp.files import temporary_beside
from cdp.locks import exclusive_lock
from cdp.workspace import Workspace
from training.models import CustomerModel
from training.scoring import outside_churn_population, score_columns

log = logging.getLogger("cdp.serving")
POLICY_SERVICE = "recommendation_v1"
REASON_TASKS = ("churn", "propensity")
"""Reasons explain the decisions: churn for win-back, propensity for the contact. CLV is left out: exact
per-row contributions of its trees cost about 2.5 ms a customer."""
OPTIONAL_MODELS = ("propensity",)
"""Models the service answers without when this data cannot train them (no touches in the lake, or the
last training skipped them for want of data, training/pipeline.py::record_untrainable): churn, CLV and
win-back, no contact recommended, instead of never being ready for a champion nobody can train."""


def _is_connection_error(error: BaseException) -> bool:
    """Redis down or unreachable (redis-py's ConnectionError and TimeoutError), not a store to reload."""
    try:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError
    except ImportError:
        return False
    return isinstance(error, RedisConnectionError | RedisTimeoutError | ConnectionError)


def freeze_loaded_objects() -> None:
    """Move what is loaded now out of the garbage collector's reach: a worker holds about 590,000 long-
    lived objects (Feast, MLflow, models), and a full collection walking them stalled every request in
    flight for about 330 ms (docs/serving.md)."""
    gc.collect()
    gc.freeze()


class EngineNotReadyError(RuntimeError):
    """The engine cannot answer (no champion model, no online store); the message says what is missing,
    `problems` the same as /readyz lists them."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems) or [message]


# --- the reload marker: how a reload in one worker reaches the others ---
RELOAD_MARKER = "serving/reload.json"
"""Under the workspace's data directory: {"generation": n, "announced_at": ...}, rewritten atomically."""


STORE_RECHECK_SECONDS = 5.0
"""How often a worker looks at its online store again: at /readyz probes while it is up, and at requests
while it is down (each 503 until then)."""
RELOAD_RETRY_SECONDS = 5.0
"""A worker whose reload failed tries again on a request at least this long after."""


def reload_marker(workspace: Workspace) -> Path:
    return workspace.data / RELOAD_MARKER


def marker_signature(path: Path) -> tuple[int, int, int] | None:
    """What changes whenever the marker is rewritten (a new file renamed over it): inode, modification
    time and size; None when there is none. One `os.stat`: cheap enough for every request."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return None
    return status.st_ino, status.st_mtime_ns, status.st_size


def read_reload_generation(path: Path) -> int:
    """The generation announced last; 0 when none was (or the marker is unreadable)."""
    try:
        return int(json.loads(path.read_text())["generation"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def announce_reload(path: Path) -> tuple[int, tuple[int, int, int] | None]:
    """Write the next generation: to a temporary file renamed over the marker (a reader sees the old or
    the new file, never half of one), under a lock so that two reloads at once count twice. Returns the
    generation and the new marker's signature."""
    with exclusive_lock(path.with_name(path.name + ".lock")):
        generation = read_reload_generation(path) + 1
        temporary = temporary_beside(path, tag=str(threading.get_ident()))
        temporary.write_text(json.dumps({"generation": generation,
                                         "announced_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}))
        signature = marker_signature(temporary)  # a rename keeps inode, modification time and size
        os.replace(temporary, path)
    return generation, signature


def identity_files(workspace: Workspace) -> tuple[Path, Path]:
    """What `cdp resolve` rewrites: the identity map, then the state file, written last."""
    from features.identity.store import identity_paths

    paths = identity_paths(workspace)
    return paths["identity_map"], paths["state"]


def identity_signature(files: tuple[Path, Path]) -> tuple:
    """The identity files' signatures, one stat each (per request: no path is built here)."""
    return marker_signature(files[0]), marker_signature(files[1])


def customers_by_email(customers: Iterable[str], emails: Iterable[str], standardize) -> tuple[dict[str, str], dict[str, int]]:
    """Standardized e-mail -> the one customer holding it, and e-mail -> how many hold it when several
    do. An address several customers hold (a family mailbox, one e-mail shared by a household) names
    none of them: answering for an arbitrary member would send one person's offer to another, so such
    a reference is answered without a customer, saying why (`SHARED_EMAIL_REASON`)."""
    owners: dict[str, set[str]] = {}
    for customer, email in zip(customers, emails, strict=True):
        key = standardize(str(email))
        if key:
            owners.setdefault(key, set()).add(customer)
    unique = {key: next(iter(held)) for key, held in owners.items() if len(held) == 1}
    return unique, {key: len(held) for key, held in owners.items() if len(held) > 1}


@dataclass
class IdentityLookup:
    """(source, source_id) and standardized e-mail -> customer_id, held in memory (never logged)."""

    by_record: dict[tuple[str, str], str]
    by_email: dict[str, str]
    customers: set[str]
    email_rules: object
    merged_into: dict[str, str] = field(default_factory=dict)
    """Ids retired by a merge -> the customer holding their records now (a campaign tool may hold one)."""
    shared_emails: dict[str, int] = field(default_factory=dict)
    """Standardized e-mails several customers hold -> how many (they resolve to nobody)."""
    merged_then_split: dict[str, str] = field(default_factory=dict)
    """Ids retired into a customer that split since: they lead nowhere (either part may be their person)."""

    @classmethod
    def load(cls, workspace: Workspace, settings: Settings) -> IdentityLookup:
        from features.identity.standardize import EmailRules, standardize_email
        from features.identity.store import read_identity_state

        identity_map = workspace.outputs / "identity_map.parquet"
        if not identity_map.exists():
            raise EngineNotReadyError(f"{identity_map} not found; run `cdp resolve` (or `cdp run`)")
        records = pd.read_parquet(identity_map, columns=["source", "source_id", "customer_id"])
        rules = EmailRules(settings.identity.email_strip_plus_tags, tuple(settings.identity.email_dotless_domains))
        by_email: dict[str, str] = {}
        shared: dict[str, int] = {}
        profiles = workspace.outputs / "profiles.parquet"
        if profiles.exists():
            emails = pd.read_parquet(profiles, columns=["customer_id", "emails"]).explode("emails").dropna()
            by_email, shared = customers_by_email(emails["customer_id"], emails["emails"],
                                                  lambda e: standardize_email(e, rules))
        by_record = dict(zip(zip(records["source"], records["source_id"], strict=True), records["customer_id"], strict=True))
        state = read_identity_state(workspace)
        return cls(by_record, by_email, set(records["customer_id"]), rules, state["merged_into"], shared,
                   state["merged_then_split"])

    def why_unknown(self, customer_id: str) -> str:
        """Why an id names no customer, in words a campaign tool can act on."""
        if customer_id in self.merged_then_split:
            return ("retired by a merge into a customer that identity resolution split since: which part is this "
                    "person is not known; find their current customer_id by a source record or e-mail (/recommend "
                    "answers it) and send that")
        return "unknown customer (not in the identity map)"

    def survivor(self, customer_id: str) -> str:
        """The customer holding an id's records now: itself, or the survivor of the merge that retired it."""
        return customer_id if customer_id in self.customers else self.merged_into.get(customer_id, customer_id)

    def resolve(self, reference: dict) -> str | None:
        from features.identity.standardize import standardize_email

        if reference.get("customer_id"):
            return self.survivor(str(reference["customer_id"]).strip())
        if reference.get("source") and reference.get("source_id"):
            # as the lake stores them (docs/data-contract.md): sources lower-cased, text trimmed
            return self.by_record.get((str(reference["source"]).strip().lower(), str(reference["source_id"]).strip()))
        if reference.get("email"):
            key = standardize_email(str(reference["email"]), self.email_rules)
            return self.by_email.get(key) if key else None
        return None

    def unresolved_reason(self, reference: dict) -> str:
        """Why a reference that resolved to no customer gets no answer of its own."""
        from features.identity.standardize import standardize_email

        by_email_only = reference.get("email") and not reference.get("customer_id") and not reference.get("source")
        if by_email_only and standardize_email(str(reference["email"]), self.email_rules) in self.shared_emails:
            return SHARED_EMAIL_REASON
        if reference.get("customer_id") in self.merged_then_split:
            return f"{UNKNOWN_CUSTOMER_REASON}: this id was {self.why_unknown(reference['customer_id'])}"
        return UNKNOWN_CUSTOMER_REASON


@dataclass(frozen=True)
class PushedEvents:
    accepted: int
    """Events pushed (a customer's several events make one push)."""
    seconds: float
    refused: dict[str, str]
    """Id as sent -> why its events were not pushed."""
    redirected: dict[str, str]
    """Id retired by a merge, as sent -> the customer whose online row its events updated."""
    dropped_fields: list[tuple[str, str, str]]
    """(id as sent, field, why) for each field left out of a push."""
    pending: list[str] = field(default_factory=list)
    """Ids as sent, refused as not in the online store yet, whose consent withdrawals were kept all the same
    (the push log): they take effect at the next materialize."""


@dataclass
class LoadedModels:
    models: dict[str, CustomerModel]
    versions: dict[str, str]
    missing: dict[str, str]
    loaded_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))

    @property
    def problems(self) -> list[str]:
        """The missing champions as /readyz names them."""
        return [f"model {task}: {reason}" for task, reason in self.missing.items()]


class RecommendationEngine:
    def __init__(self, workspace: Workspace, settings: Settings, store, identity: IdentityLookup,
                 models: LoadedModels, marker: tuple[tuple[int, int, int] | None, int] | None = None,
                 identity_seen: tuple | None = None) -> None:
        from features.feature_store import materialization_record

        self.workspace, self.settings, self.store, self.identity = workspace, settings, store, identity
        self._models = models
        self._lock = threading.Lock()
        self.features_as_of: str | None = None
        """The moment the online features describe (the latest snapshot loaded): each answer's feature_timestamp."""
        self.features_as_of_seconds: float | None = None
        """The online store's features describe customers as of this moment (seconds since 1970)."""
        self.model_problems: list[str] = models.problems
        self.store_problems: list[str] = []
        self._store_checked_at = 0.0  # time.monotonic() of the last look at the online store
        self._materialization = materialization_record(workspace)
        self._materialized_seen: object = ()  # its signature at the last look (never: ())
        self._store_was_stale = False
        self._suppression_seen: object = ()  # the suppression file's signature when last loaded (never: ())
        self._suppression_list = None
        # Reloads: the generation loaded (what the marker said at start-up), the marker as last seen, and
        # one reload at a time per engine (a requested one, or one following another worker's).
        self._marker = reload_marker(workspace)
        # `marker`: the marker as read before the models loaded (`load`); a reload announced while they
        # loaded then still differs from it, and this engine follows it on its first request.
        self._marker_seen, self.generation = marker or (marker_signature(self._marker),
                                                        read_reload_generation(self._marker))
        self._reloading = threading.Lock()
        # The identity map as loaded (its files' signatures, read before it loaded): a `cdp resolve` since
        # (the nightly run: new customers, merges) is loaded in the background and swapped in.
        self._identity_files = identity_files(workspace)
        self._identity_seen = identity_signature(self._identity_files) if identity_seen is None else identity_seen
        self._identity_loading = threading.Lock()
        self._identity_retry_at = 0.0  # time.monotonic() before which a failed load is not tried again

    @classmethod
    def load(cls, workspace: Workspace, settings: Settings) -> RecommendationEngine:
        from features.feature_store import open_feature_store

        marker = reload_marker(workspace)
        seen = (marker_signature(marker), read_reload_generation(marker))  # before the models, see __init__
        models = cls._load_models(workspace)
        identity_seen = identity_signature(identity_files(workspace))  # before it loads: a resolve meanwhile is followed
        identity = IdentityLookup.load(workspace, settings)
        store = open_feature_store(workspace, settings.features)
        return cls(workspace, settings, store, identity, models, seen, identity_seen)

    @staticmethod
    def _load_models(workspace: Workspace) -> LoadedModels:
        """The champions, warmed up: their tree tables built (and kernels compiled: one for a row, one
        for several) before the first request, so no caller waits for them (a few seconds at start-up
        instead)."""
        from training.pipeline import untrainable_reason
        from training.scoring import load_champions

        models, versions, missing = load_champions(workspace)
        for task in OPTIONAL_MODELS:
            reason = untrainable_reason(workspace, task) if task in missing else None
            if reason:  # cannot be trained on this data: answer without it, as `cdp score` does
                log.info("model %s: none needed (%s); recommendations are `none` with the reason 'no %s model' "
                         "until the data allows `cdp train %s`", task, reason, task, task)
                del missing[task]
        for task, model in models.items():
            for rows in (1, 2):
                probe = {c: np.full(rows, np.nan) for c in model.input_columns}
                probe.update({c: np.full(rows, None, dtype=object) for c in model.encoding.categories if c in probe})
                probe.update({"customer_id": np.full(rows, "warm-up", dtype=object),
                              "channel": np.full(rows, "email", dtype=object), "offer": np.full(rows, "none", dtype=object)})
                model.predict(probe)
                if task in REASON_TASKS:
                    model.explain_columns(probe)
        return LoadedModels(models, versions, missing)

    def reload(self) -> tuple[dict[str, str], int]:
        """Announce a new reload generation to every worker (they follow on their next request, see
        `follow_reloads`), then load the registry's current champions here and swap them in; requests
        in flight keep theirs. Returns the versions loaded and the generation."""
        with self._reloading:
            self.generation, self._marker_seen = announce_reload(self._marker)
            versions = self._swap_in_champions()
        with self._identity_loading:  # a resolve since start-up answers from the reload on, here at least
            self._swap_in_identity()  # a failed load keeps the champions just swapped in
        log.info("reload generation %d (POST /admin/reload): loaded %s", self.generation, versions)
        return versions, self.generation

    def follow_identity(self) -> threading.Thread | None:
        """When `cdp resolve` rewrote the identity map since it loaded, load it again on a background thread
        and swap it in (requests answer from the one loaded meanwhile) and return the thread. New customers
        are then found, and an id a merge retired leads to its survivor (a consent withdrawal sent under it
        reaches the person's row). Costs two `os.stat` while nothing changed."""
        if identity_signature(self._identity_files) == self._identity_seen or time.monotonic() < self._identity_retry_at:
            return None
        if not self._identity_loading.acquire(blocking=False):
            return None
        thread = threading.Thread(target=self._follow_identity, name="cdp-identity", daemon=True)
        thread.start()
        return thread

    def _follow_identity(self) -> None:
        """Holds `_identity_loading` (taken by the caller)."""
        try:
            self._swap_in_identity()
        finally:
            self._identity_loading.release()

    def _swap_in_identity(self) -> None:
        """Call with `_identity_loading` held. A failed load is tried again on a request at least
        RELOAD_RETRY_SECONDS later (not by sleeping here: a reload would wait on the lock), answering
        meanwhile from the map loaded before."""
        seen = identity_signature(self._identity_files)
        if seen == self._identity_seen:
            return
        try:
            fresh = IdentityLookup.load(self.workspace, self.settings)
        except Exception:
            log.exception("the identity map changed but could not be loaded; answering from the one loaded before")
            self._identity_retry_at = time.monotonic() + RELOAD_RETRY_SECONDS
            return
        self.identity, self._identity_seen = fresh, seen
        freeze_loaded_objects()
        log.info("identity map loaded again (`cdp resolve` ran since): %d customers", len(fresh.customers))

    def follow_reloads(self) -> threading.Thread | None:
        """When another worker announced a reload this engine has not done, do it on a background thread
        (requests keep the current models meanwhile; none waits for the load) and return the thread.
        Costs one `os.stat` of the marker while nothing changed. Follows a new identity map too
        (`follow_identity`)."""
        self.follow_identity()
        seen = marker_signature(self._marker)
        if seen == self._marker_seen or seen is None or not self._reloading.acquire(blocking=False):
            return None
        generation = read_reload_generation(self._marker)
        previous, self._marker_seen = self._marker_seen, seen
        if generation == self.generation:
            self._reloading.release()
            return None
        thread = threading.Thread(target=self._follow, args=(generation, previous), name=f"cdp-reload-{generation}",
                                  daemon=True)
        thread.start()
        return thread

    def _follow(self, generation: int, previous_marker: tuple[int, int, int] | None) -> None:
        """A reload announced by another worker, on its own thread; holds `_reloading` (taken by the caller).
        A failed one (the registry's SQLite file busy while every worker reloads) is tried again on a
        later request, no sooner than RELOAD_RETRY_SECONDS after."""
        try:
            versions = self._swap_in_champions()
            self.generation = generation
            log.info("reload generation %d (announced by another worker): loaded %s", generation, versions)
        except Exception:  # keep answering with the models loaded before; say why, and try again later
            log.exception("reload generation %d failed; answering with the models loaded before", generation)
            time.sleep(RELOAD_RETRY_SECONDS)
            self._marker_seen = previous_marker
        finally:
            self._reloading.release()

    def _swap_in_champions(self) -> dict[str, str]:
        fresh = self._load_models(self.workspace)
        with self._lock:
            self._models = fresh
            self.model_problems = fresh.problems
        # The online store is re-checked by the next probe or request, which holds the service's engine
        # lock, not here: this runs beside requests (a reload endpoint, a follow thread).
        self._store_checked_at = 0.0
        freeze_loaded_objects()  # the new models, as the service does with what it loaded at start-up
        return fresh.versions

    @property
    def problems(self) -> list[str]:
        """What /readyz names: missing champions, then online store problems (as of the last check)."""
        return self.model_problems + self.store_problems

    def require_ready(self, models: bool = True) -> None:
        """Raise EngineNotReadyError naming the problems when the engine cannot answer: every champion
        and the online store for a recommendation, the online store only (`models=False`) for a push.
        Reading a missing SQLite store would create an empty file and fail on its missing tables."""
        if not self.store_problems and self._sqlite_store_missing():
            self.readiness()  # deleted since the last check: find out and say so, read nothing
        elif self.store_problems:
            self.recheck_store()  # back yet?
        elif marker_signature(self._materialization) != self._materialized_seen:
            self.readiness()  # materialized since: the features' moment (feature_timestamp) changed
        problems = self.problems if models else self.store_problems
        if problems:
            raise EngineNotReadyError("not ready: " + "; ".join(problems), problems)

    def _sqlite_store_missing(self) -> bool:
        """One stat per request: reading a deleted SQLite store would create an empty file."""
        from features.feature_store import sqlite_store_path

        return self.settings.features.online_store == "sqlite" and not sqlite_store_path(self.workspace).exists()

    def readiness(self) -> list[str]:
        """Problems that stop the engine from answering well; empty when ready. Checks the online store
        again and keeps what it found for `problems` and `require_ready`."""
        from features.feature_store import online_freshness

        self._store_checked_at = time.monotonic()
        self._materialized_seen = marker_signature(self._materialization)
        # Warned once per change, not at every re-check (every 5 s at /readyz probes)
        freshness = online_freshness(self.workspace, self.settings.features, warn=False)
        if freshness.stale != self._store_was_stale:
            self._store_was_stale = freshness.stale
            if freshness.stale:
                log.warning("%s", freshness.message)
        self.features_as_of = freshness.features_as_of.isoformat() if freshness.features_as_of else None
        self.features_as_of_seconds = freshness.features_as_of.timestamp() if freshness.features_as_of else None
        problems = ([f"online store: {freshness.message}"] if freshness.materialized_at is None
                    else self._online_store_problems())
        if problems != self.store_problems:  # an operator reads when the store failed and when it came back
            if problems:
                log.error("not ready: %s", "; ".join(problems))
            else:
                log.info("online store (%s) answers again: ready", self.settings.features.online_store)
        self.store_problems = problems
        return self.problems  # a stale store still answers (logged as a warning): campaigns must get an answer

    def _online_store_problems(self) -> list[str]:
        """The online store must exist and hold a known customer: a deleted SQLite file or an empty or
        unreachable Redis would otherwise answer every request with the cold start."""
        from features.feature_store import sqlite_store_path

        fix = "run `cdp features materialize` (or `cdp run`)"
        if self._sqlite_store_missing():
            return [f"online store: {sqlite_store_path(self.workspace)} not found; {fix}"]
        probe = list(itertools.islice(iter(self.identity.customers), 50))
        if not probe:
            return []
        try:
            _, found = self.online_columns(probe)
        except Exception as error:  # any store failure (no table, Redis down) is a readiness problem
            if _is_connection_error(error):  # materializing cannot help while the server is away
                fix = f"bring it back (the service re-checks every {STORE_RECHECK_SECONDS:g} s)"
            return [f"online store ({self.settings.features.online_store}) unreadable: "
                    f"{type(error).__name__}: {error}; {fix}"]
        if not any(found):
            return [f"online store ({self.settings.features.online_store}) holds no features for known customers; {fix}"]
        return []

    def online_features(self, customer_ids: Sequence[str]) -> tuple[pd.DataFrame, list[bool]]:
        """Every feature the models and the policy need, one row per customer in request order,
        read in one go through the FeatureServices' reader."""
        online = self._reader().read(customer_ids)
        return online.frame, list(online.found)

    def online_columns(self, customer_ids: Sequence[str]) -> tuple[dict[str, np.ndarray], list[bool]]:
        """`online_features` as numpy columns by name: what `recommend` scores from."""
        return self._reader().read_columns(customer_ids)

    def _reader(self):
        from features.feature_store import online_feature_reader

        services = sorted({m.feature_service for m in self._models.models.values()} | {POLICY_SERVICE})
        return online_feature_reader(self.store, services)

    def recommend(self, references: Sequence[dict], context: dict | None = None) -> list[dict]:
        """One answer per reference, in order; unknown customers get the documented cold-start answer.

        Numpy columns all the way (online read, scores, policy, reasons): for a few customers pandas'
        per-call overhead cost more than the models."""
        from serving.policy import decide, explained_touches
        from serving.reasons import own_channel_contributions, phrases_from_contributions

        context = context or {}
        models = self._models
        started = time.perf_counter()
        identity = self.identity  # one map for the whole request, though a newer one may be swapped in
        customer_ids = [identity.resolve(r) for r in references]
        # erased since this worker loaded the identity map: unknown, as after a restart (not even the id)
        erased = self.erased_customers([c for c in customer_ids if c is not None])
        customer_ids = [None if c in erased else c for c in customer_ids]
        known = [i for i, c in enumerate(customer_ids) if c is not None and c in identity.customers]
        answers: list[dict] = [cold_start_answer(r, customer_ids[i], identity.unresolved_reason(r))
                               for i, r in enumerate(references)]
        if not known:
            return answers
        ids = [customer_ids[i] for i in known]
        with self._store_failures_as_not_ready():
            features, found = self.online_columns(ids)
        if not any(found) and time.monotonic() - self._store_checked_at > STORE_RECHECK_SECONDS:
            # nobody found: an emptied store (Redis restarted empty, flushed) would answer everyone with the
            # cold start; this worker checks now, as the one a probe reaches would
            self.readiness()
            if self.store_problems:
                raise EngineNotReadyError("not ready: " + "; ".join(self.store_problems), self.store_problems)
        churn_model = models.models.get("churn")
        outside = outside_churn_population(features, churn_model) if churn_model is not None else None
        explained = self._explain_churn(features, models, outside)
        scores = score_columns(features, models.models,
                               churn_contributions=explained["churn"][0] if "churn" in explained else None)
        now = pd.Timestamp.now(tz="UTC")
        decisions = decide(
            {**features, **{k: v for k, v in scores.items() if k != "customer_id"}}, self.settings.policy,
            campaign_id=context.get("campaign_id"), allowed_channels=context.get("allowed_channels"),
            alternatives=True, now=now,
        )
        if "propensity" in models.models:  # why the contact chosen would work (a plain e-mail for none)
            propensity = models.models["propensity"]
            channels, offers = explained_touches(decisions["policy_action"])
            values, encoded = propensity.explain_columns({**features, "channel": channels, "offer": offers})
            explained["propensity"] = (own_channel_contributions(propensity.encoding.columns, values, channels,
                                                                 self.settings.policy.channels), encoded)
        reasons = {task: phrases_from_contributions(models.models[task].encoding.columns, values, encoded,
                                                    direction="net" if task == "churn" else "up")
                   for task, (values, encoded) in explained.items()}
        if outside is not None and outside.any():
            _explain_missing_churn(reasons, features, outside, churn_model, now, self.features_as_of_seconds)
        scores, decisions = _lists(scores), _lists(decisions)
        for position, index in enumerate(known):
            if not found[position]:
                answers[index] |= {"customer_id": ids[position], "no_contact_reason": NO_FEATURES_REASON}
                continue
            answers[index] = format_answer(ids[position], _row(scores, position), _row(decisions, position),
                                           {t: r[position] for t, r in reasons.items()}, models.versions,
                                           self.features_as_of)
        log.debug("recommend: %d customers in %.1f ms", len(references), (time.perf_counter() - started) * 1000)
        return answers

    def _explain_churn(self, features: dict[str, np.ndarray], models: LoadedModels,
                       churn_outside: np.ndarray | None) -> dict[str, tuple[np.ndarray, Mapping[str, np.ndarray]]]:
        """The churn model's SHAP values of each customer in its population (`churn_outside` marks the
        others: they have no score to explain) and the encoded input they refer to; the propensity
        model's come after the policy chose each customer's action (`recommend`)."""
        model = models.models.get("churn")
        if model is None or not (~churn_outside).any():
            return {}
        return {"churn": model.explain_columns(features, rows=~churn_outside)}

    def apply_events(self, events: Sequence[dict]) -> PushedEvents:
        """/events: each event's customer as identity resolution holds it now (an id retired by a merge
        is the same person as its survivor, as `/recommend` answers it), a customer's events merged in
        order (a later field wins) into one push; refusals reported under the id the caller sent. A push
        creates an online row, so ids the identity map does not know, or erased since this worker loaded
        it, are refused: an erased person must not come back through the service (docs/privacy.md). A
        moment more than a day in the future (it would stick: a pushed moment never moves back) is
        dropped alone: it must not take a consent withdrawal sent beside it down with it."""
        from features.feature_store import SENT_AS, late_moment_fields

        now = time.time()
        identity = self.identity  # one map for the whole request, though a newer one may be swapped in
        targets = {event["customer_id"]: identity.survivor(event["customer_id"]) for event in events}
        refused = self.refused_customers(list(targets.values()), identity)  # every id, even one with nothing to push
        merged: dict[str, dict] = {}
        dropped: list[tuple[str, str, str]] = []
        contributed: list[bool] = []  # per event: something of it went into a push
        for event in events:
            late = late_moment_fields(event, now)
            dropped += [(event["customer_id"], field, reason) for field, reason in late.items()]
            kept = {field: value for field, value in event.items() if field not in late and field != "customer_id"}
            target = targets[event["customer_id"]]
            contributed.append(bool(kept) and target not in refused)
            if contributed[-1]:
                merged.setdefault(target, {"customer_id": target}).update(kept)
                if event["customer_id"] != target:  # redirected: the push log keeps the id it was sent under
                    merged[target].setdefault(SENT_AS, []).append(event["customer_id"])
        seconds, store_refused = self.push_events(pd.DataFrame(list(merged.values()))) if merged else (0.0, {})
        refused |= store_refused
        applied = [done and targets[event["customer_id"]] not in refused
                   for done, event in zip(contributed, events, strict=True)]
        return PushedEvents(
            accepted=sum(applied), seconds=seconds,
            refused={sent: refused[held] if sent == held else f"merged into {held}, refused: {refused[held]}"
                     for sent, held in targets.items() if held in refused},
            pending=[sent for sent, held in targets.items() if held in store_refused],
            redirected={event["customer_id"]: targets[event["customer_id"]]
                        for done, event in zip(applied, events, strict=True)
                        if done and event["customer_id"] != targets[event["customer_id"]]},
            dropped_fields=dropped,
        )

    def push_events(self, events: pd.DataFrame) -> tuple[float, dict[str, str]]:
        """Fresh signals into the online store through the PushSource, for customers `apply_events`
        already judged (known, not erased, no moment in the future); returns the seconds taken and the
        customers refused here: those not in the online store yet, since a row of only the pushed
        fields would hide their batch consents."""
        from features.feature_store import push_realtime_signals

        # Its withdrawals are logged first, kept when the store fails (answered 503) or the customer is
        # refused here; its grants only once the store took them (docs/serving.md).
        with self._store_failures_as_not_ready():
            pushed = push_realtime_signals(self.store, events, absent="skip")
        return pushed.seconds, {c: "not in the online store yet (run `cdp features materialize`); a consent withdrawal "
                                   "in it is kept and takes effect at the next materialize" for c in pushed.not_in_store}

    @contextmanager
    def _store_failures_as_not_ready(self):
        """A store that fails mid-service (Redis down, the SQLite file gone) makes the engine not ready:
        this request and the next answer 503 naming it, until a re-check finds the store back
        (`recheck_store`), instead of a 500 per request."""
        from features.feature_store import FeatureStoreError
        from features.online_store import is_redis_error

        try:
            yield
        except (OSError, ConnectionError, sqlite3.Error, FeatureStoreError) as error:
            raise self._store_failed(error) from error
        except Exception as error:
            if is_redis_error(error):
                raise self._store_failed(error) from error
            raise

    def _store_failed(self, error: Exception) -> EngineNotReadyError:
        kind = self.settings.features.online_store
        self.store_problems = [f"online store ({kind}) unreadable: {type(error).__name__}: {error}; "
                               f"bring it back (the service re-checks every {STORE_RECHECK_SECONDS:g} s)"]
        self._store_checked_at = time.monotonic()
        log.error("%s", self.store_problems[0])
        return EngineNotReadyError("not ready: " + self.store_problems[0], self.store_problems)

    def recheck_store(self) -> None:
        """Check the online store again when the last check is older than STORE_RECHECK_SECONDS: /readyz
        sees an outage, and requests see its end."""
        if time.monotonic() - self._store_checked_at > STORE_RECHECK_SECONDS:
            self.readiness()

    def refused_customers(self, customer_ids: Sequence[str], identity: IdentityLookup | None = None) -> dict[str, str]:
        """customer_id -> reason, for ids a push must not write: unknown, or erased (in the workspace's
        suppression list, re-read when it changed)."""
        identity = identity or self.identity
        erased = self.erased_customers(customer_ids)
        refused = {}
        for customer in dict.fromkeys(customer_ids):
            if customer not in identity.customers:
                refused[customer] = identity.why_unknown(customer)
            elif customer in erased:
                refused[customer] = "erased (cdp forget)"
        return refused

    def erased_customers(self, customer_ids: Sequence[str]) -> set[str]:
        """The ids in the workspace's suppression list (erased by `cdp forget` after this worker loaded
        the identity map, which still holds them until a restart)."""
        from features.suppression import keyed_hash

        suppression = self._suppression()
        if suppression.empty:
            return set()
        return {c for c in customer_ids if keyed_hash(suppression.salt, "customer", c) in suppression.hashes}

    def _suppression(self):
        """The suppression list, loaded again whenever its file changed (one stat per call)."""
        from features.suppression import load_suppression, suppression_path

        path = suppression_path(self.workspace, self.settings.privacy)
        signature = marker_signature(path)
        if self._suppression_seen != signature:
            self._suppression_list = load_suppression(self.workspace, self.settings.privacy)
            self._suppression_seen = signature
        return self._suppression_list


UNKNOWN_CUSTOMER_REASON = "unknown customer: no profile or consent on record (cold start)"
SHARED_EMAIL_REASON = ("e-mail shared by several customers (a household's): it names none of them; send a "
                       "customer_id or a source and source_id")
"""Says neither who nor how many: a caller could otherwise count the holders of any address."""
NO_FEATURES_REASON = ("known customer without features in the online store yet (no activity in the feature tables "
                      "it was loaded from, or added since): no consent on record (cold start)")


def cold_start_answer(reference: dict, customer_id: str | None, reason: str = UNKNOWN_CUSTOMER_REASON) -> dict:
    """An unknown customer: no scores, no consent on record, so no contact — said plainly."""
    return {
        "reference": _safe_reference(reference), "customer_id": customer_id, "found": False,
        "scores": None, "next_best_action": "none", "next_best_channel": None, "expected_value": 0.0,
        "alternatives": [], "win_back": {"eligible": False, "action": None, "timing": None},
        "reasons": {}, "holdout": False,
        "no_contact_reason": reason,
        "model_versions": {}, "feature_timestamp": None,
    }


def _safe_reference(reference: dict) -> dict:
    """Echo the reference without raw PII: an e-mail is shown masked."""
    shown = {k: v for k, v in reference.items() if v is not None}
    if "email" in shown:
        local, _, domain = str(shown["email"]).partition("@")
        shown["email"] = f"{local[:1]}***@{domain}"
    return shown


def _explain_missing_churn(reasons: dict[str, list[list[str]]], features: Mapping[str, np.ndarray],
                           outside: np.ndarray, model: CustomerModel, now: pd.Timestamp,
                           features_as_of: float | None) -> None:
    """The churn reasons of customers outside the churn model's population say why they have no score
    (and, for an order pushed after the moment the stored features describe, that they miss it)."""
    from serving.reasons import unscored_churn_phrases

    phrases = reasons.setdefault("churn", [[] for _ in range(len(outside))])
    rows = np.flatnonzero(outside)
    pushed = features.get("last_order_epoch_seconds")
    days_ago = None
    if pushed is not None and features_as_of is not None:
        moment = np.asarray(pushed, dtype=float)[rows]
        with np.errstate(invalid="ignore"):  # a stored last order is never after the features' moment
            days_ago = np.where(moment > features_as_of, np.maximum(now.timestamp() - moment, 0.0) / 86400.0, np.nan)
    for row, phrase in zip(rows, unscored_churn_phrases(features["days_since_last_order"][rows],
                                                        model.population_days, days_ago), strict=True):
        phrases[row] = [phrase]


def _lists(columns: dict[str, np.ndarray]) -> dict[str, list]:
    """Columns as Python lists (numbers and booleans as Python's): a list is read per customer
    several times faster than a numpy array."""
    return {name: values.tolist() for name, values in columns.items()}


def _row(columns: dict[str, list], position: int) -> dict:
    """One customer's values from columns."""
    return {name: values[position] for name, values in columns.items()}


def _number(value) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def format_answer(customer_id: str, scores: dict, decision: dict, reasons: dict[str, list[str]],
                  versions: dict[str, str], features_as_of: str | None) -> dict:
    conversions = {k.removeprefix("conversion_"): _number(v) for k, v in scores.items() if k.startswith("conversion_")}
    return {
        "customer_id": customer_id, "found": True,
        "scores": {"churn_probability": _number(scores.get("churn_probability")), "clv": _number(scores.get("clv")),
                   "conversion_probability": conversions},
        "next_best_action": decision["next_best_action"], "next_best_channel": decision.get("next_best_channel"),
        "expected_value": _number(decision.get("expected_value")) or 0.0,
        "policy_action": decision.get("policy_action"),
        "alternatives": list(decision.get("alternatives") or []),
        "win_back": {"eligible": bool(decision.get("win_back")), "action": decision.get("win_back_action"),
                     "offer": decision.get("win_back_offer"), "timing": decision.get("win_back_timing"),
                     "value": _number(decision.get("win_back_value")), "reason": decision.get("win_back_reason")},
        "reasons": reasons, "holdout": bool(decision.get("holdout")),
        "no_contact_reason": decision.get("no_contact_reason"),
        "model_versions": dict(versions),
        "feature_timestamp": features_as_of,
    }
