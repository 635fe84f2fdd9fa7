"""What a model stores as category levels: never a value that names an e-mail or phone."""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.models import MISSING_CATEGORY, FeatureEncoding


def test_levels_naming_a_phone_or_email_are_not_stored_and_score_as_missing():
    frame = pd.DataFrame({"attribute_preferred_contact": ["email", "sms", "call 07512317732", "x@example.org", None],
                          "orders_total": [1.0, 2.0, 3.0, 4.0, 5.0]})
    encoding = FeatureEncoding.fit(frame)
    assert encoding.categories["attribute_preferred_contact"] == sorted(["email", "sms", MISSING_CATEGORY])
    codes = encoding.matrix(frame)[:, 0]
    missing = encoding.categories["attribute_preferred_contact"].index(MISSING_CATEGORY)
    assert np.array_equal(codes[2:], [missing] * 3)
