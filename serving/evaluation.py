"""The policy's value on the simulator: true incremental conversions and profit per 1,000 customers of
our choices against simple policies and the oracle's own best policy, all under the same eligibility
(consent, reachability, caps) and the same costs.

True profit of an action = (P(convert | action) − P(convert | no contact)) × V − channel cost
− offer depth × V × P(convert | action), with V the person's true expected order value net of
returns and the probabilities from the oracle (a promo-strength touch on the as-of day).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cdp.config import PolicySettings

CHANNELS = ("email", "push", "sms")
OFFER_DEPTHS = {"none": 0.0, "10pct": 0.10, "20pct": 0.20}


def split_action(action: str) -> tuple[str, str]:
    channel, _, offer = str(action).partition(":")
    return channel, offer or "none"


def true_profits(truth: dict[str, pd.DataFrame], order_value: pd.Series, people: pd.Series,
                 actions: list[str], costs: dict[str, float]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """customer rows x actions: the true incremental profit and conversion uplift of each action (0 for none)."""
    baseline = truth["none"].set_index("person_id")["none"].reindex(people).to_numpy()
    value = order_value.reindex(people).fillna(0).to_numpy()
    profits = {"none": np.zeros(len(people))}
    uplifts = {"none": np.zeros(len(people))}
    for action in actions:
        if action == "none":
            continue
        channel, offer = split_action(action)
        converted = truth[offer].set_index("person_id")[channel].reindex(people).to_numpy()
        depth = OFFER_DEPTHS.get(offer, 0.0)
        uplifts[action] = converted - baseline
        profits[action] = (converted - baseline) * value - costs.get(channel, 0.0) - depth * value * converted
    return pd.DataFrame(profits), pd.DataFrame(uplifts)


def choose_baselines(eligible: pd.DataFrame, engagement: pd.DataFrame, seed: int = 0) -> dict[str, np.ndarray]:
    """Actions of the simple policies: a random eligible channel, always e-mail, the most engaged channel."""
    rng = np.random.default_rng(seed)
    flags = eligible[[f"eligible_{c}" for c in CHANNELS]].fillna(False).to_numpy(bool)
    random_choice = np.full(len(flags), "none", dtype=object)
    for row in np.flatnonzero(flags.any(axis=1)):
        random_choice[row] = CHANNELS[rng.choice(np.flatnonzero(flags[row]))]
    always_email = np.where(flags[:, 0], "email", "none").astype(object)
    clicks = np.column_stack([engagement.get(f"{c}_click_rate_90d", pd.Series(np.nan, index=engagement.index))
                              .fillna(-1).to_numpy() for c in CHANNELS])
    clicks = np.where(flags, clicks, -np.inf)
    engaged = np.where(flags.any(axis=1), np.array(CHANNELS, dtype=object)[np.argmax(clicks, axis=1)], "none")
    return {"random_eligible_channel": random_choice, "always_email": always_email, "most_engaged_channel": engaged}


def oracle_choice(profits: pd.DataFrame, eligible: pd.DataFrame) -> np.ndarray:
    """The best eligible action by true profit; no contact when nothing is worth it."""
    masked = profits.copy()
    for action in masked.columns:
        if action != "none":
            channel, _ = split_action(action)
            masked.loc[~eligible[f"eligible_{channel}"].fillna(False).to_numpy(bool), action] = -np.inf
    return masked.idxmax(axis=1).to_numpy()


def value_of(choice: np.ndarray, profits: pd.DataFrame, uplifts: pd.DataFrame) -> dict[str, float]:
    rows = np.arange(len(choice))
    columns = profits.columns.get_indexer(choice)
    if (columns < 0).any():
        raise KeyError(f"actions without a true value: {sorted(set(choice[columns < 0]))}")
    per_customer = profits.to_numpy()[rows, columns]
    return {"incremental_profit_per_1000": float(per_customer.mean() * 1000),
            "incremental_conversions_per_1000": float(uplifts.to_numpy()[rows, columns].mean() * 1000),
            "contacted_share": float((choice != "none").mean())}


def evaluate_policy(scores: pd.DataFrame, engagement: pd.DataFrame, identity_map: pd.DataFrame, truth_dir: Path,
                    settings: PolicySettings, window_days: int) -> dict:
    """Every policy's true value on the scored customers that map to a simulated person."""
    from features.simulator import Oracle
    from features.simulator.dynamics import expected_order_value, expected_returned_fraction
    from training.evaluation import oracle_day, person_of_customer

    oracle = Oracle.load(truth_dir)
    people = scores["customer_id"].map(person_of_customer(identity_map, oracle.record_map()))
    keep = people.notna().to_numpy()
    scores, people = scores[keep].reset_index(drop=True), people[keep].reset_index(drop=True)
    engagement = engagement.set_index("customer_id").reindex(scores["customer_id"]).reset_index(drop=True)
    day = oracle_day(pd.Timestamp(scores["as_of"].iloc[0]))
    truth = {offer: oracle.conversion_probability(day, window_days, None if offer == "none" else offer)
             for offer in OFFER_DEPTHS}
    traits = oracle.traits().set_index("person_id")
    value = pd.Series(expected_order_value(traits["value_log_mean"].to_numpy(), traits["value_log_sigma"].to_numpy())
                      * (1 - expected_returned_fraction(traits["return_propensity"].to_numpy(), oracle.parameters)),
                      index=traits.index)
    actions = ["none"] + [f"{c}:{o}" if o != "none" else c for c in CHANNELS for o in OFFER_DEPTHS]
    costs = dict(settings.channel_costs)
    profits, uplifts = true_profits(truth, value, people, actions, costs)
    eligible = scores[[f"eligible_{c}" for c in CHANNELS]]
    choices = {"our_policy": scores["policy_action"].fillna(scores["next_best_action"]).to_numpy(object),
               **choose_baselines(eligible, engagement), "oracle_best": oracle_choice(profits, eligible)}
    results = {name: value_of(choice, profits, uplifts) for name, choice in choices.items()}
    ours, best = results["our_policy"]["incremental_profit_per_1000"], results["oracle_best"]["incremental_profit_per_1000"]
    email = results["always_email"]["incremental_profit_per_1000"]
    random_channel = results["random_eligible_channel"]["incremental_profit_per_1000"]
    return {"customers": len(scores), "as_of_day": day, "policies": results,
            "share_of_oracle_profit": ours / best if best else None,
            "ratio_to_always_email": ours / email if email > 0 else None,
            # the honest comparison for choosing among channels: contacting every eligible customer on a random one
            "ratio_to_random_eligible_channel": ours / random_channel if random_channel > 0 else None,
            "bar": "our profit >= 0.8 x oracle_best and >= 1.5 x always_email"}
