"""One reading of a moment: the CLI, the config, feature tables and scores all speak UTC."""

from __future__ import annotations

import pandas as pd


def utc_timestamp(moment) -> pd.Timestamp:
    """A datetime, timestamp or ISO text as a UTC timestamp; a naive one is taken to be UTC already."""
    moment = pd.Timestamp(moment)
    return moment.tz_convert("UTC") if moment.tzinfo else moment.tz_localize("UTC")
