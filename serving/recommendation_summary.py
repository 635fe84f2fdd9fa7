"""What the policy recommends and why, for campaign analysts (notebooks/03-recommendations): counts
of next-best actions with their expected value, the win-back list, the holdout, eligibility per
channel, reasons for a few customers, and the policy's true value when the simulator's truth is at
hand.

Pure functions take the frame `cdp score` writes (data/outputs/scores.parquet); the readers and the
engine call at the bottom are the I/O edge. Customers appear by customer_id only, never with
personal data.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cdp.config import Settings
from cdp.workspace import Workspace

NO_CONTACT = "none"
CHANNEL_PREFIX = "eligible_"
DETAIL_IN_BRACKETS = r" \([^()]*:[^()]*\)$"
"""The per-channel detail a no-contact reason ends with: "(email: consent withdrawn; push: ...)"."""


def _flags(scores: pd.DataFrame, column: str) -> pd.Series:
    """A boolean column (missing values and an absent column read as False)."""
    if column not in scores:
        return pd.Series(False, index=scores.index)
    return scores[column].eq(True)


def _share(count: int | float, total: int) -> float:
    return round(float(count) / total, 4) if total else 0.0


def summarize_recommendations(scores: pd.DataFrame) -> pd.DataFrame:
    """The headline numbers of a scoring run, one row per measure."""
    contacted = scores["next_best_action"] != NO_CONTACT
    measures = {
        "customers scored": len(scores),
        "as of": str(pd.Timestamp(scores["as_of"].iloc[0])) if "as_of" in scores and len(scores) else None,
        "customers to contact": int(contacted.sum()),
        "total expected value of the contacts": round(float(scores["expected_value"].fillna(0).sum()), 2),
        "win-back customers": int(_flags(scores, "win_back").sum()),
        "holdout customers": int(_flags(scores, "holdout").sum()),
    }
    if "churn_probability" in scores:
        scored = scores["churn_probability"].notna()
        measures["mean churn probability (customers with one)"] = (
            round(float(scores["churn_probability"].mean()), 4) if scored.any() else None)
        measures["customers without a churn probability (no order in the churn model's window)"] = int((~scored).sum())
    if "clv" in scores:
        measures["total predicted CLV"] = round(float(scores["clv"].sum()), 2)
    return pd.DataFrame({"measure": list(measures), "value": pd.Series(list(measures.values()), dtype=object)})


def count_next_best_actions(scores: pd.DataFrame) -> pd.DataFrame:
    """Customers per next-best action (`none` = no contact) with the expected incremental value
    of those contacts in total and per customer, largest groups first."""
    grouped = scores.groupby("next_best_action")["expected_value"]
    table = pd.DataFrame({"customers": grouped.size(), "expected_value_total": grouped.sum().round(2),
                          "expected_value_per_customer": grouped.mean().round(4)})
    table["share"] = (table["customers"] / len(scores)).round(4)
    table = table.sort_values(["customers", "expected_value_total"], ascending=False).reset_index()
    return table[["next_best_action", "customers", "share", "expected_value_total", "expected_value_per_customer"]]


def no_contact_reasons(scores: pd.DataFrame, detail: bool = False) -> pd.DataFrame:
    """Why customers get no contact (no consented, reachable channel, quiet period, not worth the
    cost, holdout, ...); `detail` keeps the per-channel explanation in brackets, which splits the
    counts much finer."""
    reasons = scores.loc[scores["next_best_action"] == NO_CONTACT, "no_contact_reason"].fillna("(no reason given)")
    if not detail:
        reasons = reasons.str.replace(DETAIL_IN_BRACKETS, "", regex=True)
    counts = reasons.value_counts()
    return pd.DataFrame({"reason": counts.index, "customers": counts.to_numpy(),
                         "share_of_scored": [_share(c, len(scores)) for c in counts.to_numpy()]})


def eligibility_by_channel(scores: pd.DataFrame) -> pd.DataFrame:
    """Per channel: customers the policy may contact on it (consent, reachability, caps, quiet
    periods), and those it recommends it to as next-best action or for win-back."""
    channels = [c.removeprefix(CHANNEL_PREFIX) for c in scores.columns if c.startswith(CHANNEL_PREFIX)]
    win_back_channel = scores["win_back_action"].fillna("").str.partition(":")[0] if "win_back_action" in scores else None
    rows = []
    for channel in channels:
        eligible = _flags(scores, f"{CHANNEL_PREFIX}{channel}")
        rows.append({
            "channel": channel, "eligible_customers": int(eligible.sum()), "eligible_share": _share(eligible.sum(), len(scores)),
            "next_best_channel": int((scores["next_best_channel"] == channel).sum()),
            "win_back_channel": int((win_back_channel == channel).sum()) if win_back_channel is not None else 0,
        })
    return pd.DataFrame(rows, columns=["channel", "eligible_customers", "eligible_share", "next_best_channel",
                                       "win_back_channel"])


def holdout_summary(scores: pd.DataFrame) -> pd.DataFrame:
    """Treated against holdout (the control group kept out of every contact to measure lift):
    customers, how many the policy would contact, and the mean churn risk and CLV of each group
    (similar means show the hashed split is unbiased)."""
    group = np.where(_flags(scores, "holdout"), "holdout", "treated")
    would_contact = scores["policy_action"] if "policy_action" in scores else scores["next_best_action"]
    frame = scores.assign(group=group, would_contact=(would_contact.fillna(NO_CONTACT) != NO_CONTACT))
    grouped = frame.groupby("group")
    table = pd.DataFrame({"customers": grouped.size(), "policy_would_contact": grouped["would_contact"].sum().astype(int)})
    for column in ("churn_probability", "clv"):
        if column in scores:
            table[f"mean_{column}"] = grouped[column].mean().round(4)
    return table.reset_index()


def win_back_list(scores: pd.DataFrame, top: int | None = 20) -> pd.DataFrame:
    """Customers to win back today, most valuable first (predicted CLV, then churn risk), with the
    action and the churn model's reasons; `top=None` lists all."""
    chosen = scores[_flags(scores, "win_back")]
    columns = [c for c in ("customer_id", "win_back_action", "churn_probability", "clv", "reasons") if c in chosen]
    order = [c for c in ("clv", "churn_probability") if c in chosen]
    listed = chosen.sort_values(order, ascending=False) if order else chosen
    listed = listed[columns].reset_index(drop=True)
    return listed if top is None else listed.head(top)


def win_back_actions(scores: pd.DataFrame) -> pd.DataFrame:
    """Win-back customers per action (channel and offer tier)."""
    counts = scores.loc[_flags(scores, "win_back"), "win_back_action"].value_counts()
    return pd.DataFrame({"win_back_action": counts.index, "customers": counts.to_numpy()})


def pick_example_customers(scores: pd.DataFrame, per_action: int = 1) -> list[str]:
    """A few customers worth explaining: the highest expected value of each next-best action, the
    most valuable win-back customer and one holdout customer (deterministic)."""
    ranked = scores.sort_values(["expected_value", "customer_id"], ascending=[False, True])
    picked = list(ranked.groupby("next_best_action", sort=True).head(per_action)["customer_id"])
    picked += list(win_back_list(scores, top=1)["customer_id"])
    picked += list(ranked.loc[_flags(ranked, "holdout"), "customer_id"].head(1))
    return list(dict.fromkeys(picked))


def answers_table(answers: Sequence[dict]) -> pd.DataFrame:
    """The service's answers (engine.recommend) as one row per customer: the decision, its value,
    win-back, holdout, why not contacted, and the reason phrases of each model."""
    rows = []
    for answer in answers:
        win_back = answer.get("win_back") or {}
        reasons = answer.get("reasons") or {}
        rows.append({
            "customer_id": answer.get("customer_id"), "next_best_action": answer.get("next_best_action"),
            "expected_value": answer.get("expected_value"), "win_back": win_back.get("action"),
            "holdout": answer.get("holdout"), "no_contact_reason": answer.get("no_contact_reason"),
            **{f"{task}_reasons": "; ".join(phrases) for task, phrases in reasons.items()},
        })
    return pd.DataFrame(rows)


def policy_evaluation_table(result: dict) -> pd.DataFrame:
    """`serving.evaluation.evaluate_policy`'s result as one row per policy (true value per 1,000
    customers), with each policy's share of the oracle's profit."""
    table = pd.DataFrame(result["policies"]).T.rename_axis("policy").reset_index()
    best = result["policies"].get("oracle_best", {}).get("incremental_profit_per_1000")
    table["share_of_oracle_profit"] = table["incremental_profit_per_1000"] / best if best else np.nan
    return table


def read_scores(workspace: Workspace) -> pd.DataFrame:
    """The last `cdp score` output of a workspace."""
    path = workspace.outputs / "scores.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; run `cdp score` (or `cdp run`) in {workspace.root}")
    return pd.read_parquet(path)


def segment_sizes(workspace: Workspace, settings: Settings) -> pd.DataFrame:
    """Customers in each exportable segment (built-in and configured; `cdp export --segment NAME`
    writes the list itself), with those a contact segment leaves out: held out, or with no eligible
    channel (consents withdrawn since the scores included, as the export counts them)."""
    from features.feature_tables import pushed_consents
    from serving import segments

    rows = []
    withdrawn = None
    for name, definition in settings.segments.definitions.items():
        names = segments.referenced_names(definition.where)
        scores = segments.read_scores(segments.default_scores_path(workspace), names)
        if withdrawn is None:  # the push log, read once
            withdrawn = segments.consents_withdrawn_since(pushed_consents(workspace), segments.scores_as_of(scores))
        scores, _ = segments.honour_later_withdrawals(scores, withdrawn)
        features = segments.read_features_as_of(workspace, segments.scores_as_of(scores), names,
                                                skip=[*scores.columns, *segments.DERIVED_COLUMNS])
        matched = segments.select_segment(scores, features, definition.model_copy(update={"contact": False}),
                                          settings.segments.parameters, name)
        chosen = segments.select_segment(scores, features, definition, settings.segments.parameters, name)
        left_out = matched[~matched["customer_id"].isin(chosen["customer_id"])]
        held = (left_out["holdout"].fillna(False).astype(bool).to_numpy() if "holdout" in left_out
                else np.zeros(len(left_out), dtype=bool))
        rows.append({"segment": name, "customers": len(chosen), "holdout_left_out": int(held.sum()),
                     "no_channel_left_out": int((~held).sum()), "contact_list": definition.contact,
                     "where": definition.where, "description": definition.description})
    return pd.DataFrame(rows)


def explain_customers(engine, customer_ids: Sequence[str]) -> pd.DataFrame:
    """What the service answers for these customers now (online features), as `answers_table`."""
    return answers_table(engine.recommend([{"customer_id": c} for c in customer_ids]))


def truth_directory(truth: Path | str) -> Path:
    """The simulator's truth folder: the given directory, or its `truth/` subfolder."""
    truth = Path(truth)
    return truth if (truth / "simulation.json").exists() else truth / "truth"


def evaluate_workspace_policy(workspace: Workspace, settings: Settings, truth: Path | str) -> dict:
    """The policy of the last `cdp score` valued against the simulator's oracle, next to simple
    policies (what `cdp evaluate policy` prints). A relative `truth` is read below the workspace (a
    notebook's working directory is its own folder)."""
    from features.feature_tables import feature_table_path
    from serving.evaluation import evaluate_policy

    truth = Path(truth)
    truth_dir = truth_directory(truth if truth.is_absolute() else workspace.root / truth)
    identity_map = workspace.outputs / "identity_map.parquet"
    for needed in (truth_dir / "simulation.json", identity_map):
        if not needed.exists():
            raise FileNotFoundError(f"{needed} not found")
    scores = read_scores(workspace)
    engagement = pd.read_parquet(feature_table_path(workspace, "engagement"))
    at_scoring = pd.to_datetime(engagement["event_timestamp"], utc=True) == pd.Timestamp(scores["as_of"].iloc[0])
    return evaluate_policy(scores, engagement[at_scoring], pd.read_parquet(identity_map), truth_dir, settings.policy,
                           settings.training.conversion_window_days)
