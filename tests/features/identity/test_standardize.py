"""Standardization: the same person written two ways compares equal."""

from __future__ import annotations

import pandas as pd
import pytest

from features.identity.standardize import (
    EmailRules,
    family_mailboxes,
    is_landline,
    standardize_address,
    standardize_email,
    standardize_name,
    standardize_phone,
    standardize_phones,
    standardize_records,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("  O'Brien ", "o brien"), ("JOSÉ", "jose"), ("Γιώργος", "giorgos"), ("Сергей", "sergey"), ("芳", "fang"),
     ("...", None)],
)
def test_names_are_transliterated_casefolded_and_stripped(raw, expected):
    assert standardize_name(raw) == expected


def test_email_provider_rules_apply_only_where_configured():
    rules = EmailRules()
    assert standardize_email(" John.Smith+shop@GoogleMail.com ", rules) == "johnsmith@gmail.com"
    assert standardize_email("john.smith+x@yahoo.co.uk", rules) == "john.smith@yahoo.co.uk"
    assert standardize_email("john.smith+x@yahoo.co.uk", EmailRules(strip_plus_tags=False)) == "john.smith+x@yahoo.co.uk"
    assert standardize_email("no-at-sign", rules) is None


def test_phones_become_e164_with_the_default_region():
    for raw in ("07700 900123", "+44 7700 900123", "+44 (0)7700 900123", "07700-900-123", "0044 7700 900123"):
        assert standardize_phone(raw, "GB") == "+447700900123"
    assert standardize_phone("12", "GB") is None and standardize_phone("abc", "GB") is None
    assert is_landline("+442079460000") and not is_landline("+447911123456")


@pytest.mark.parametrize(
    ("e164", "landline"),
    [("+442920181234", True),   # a Cardiff landline
     ("+44292000650", False),   # a Cardiff-looking number with a digit missing: kind unknown
     ("+447911123456", False),  # a mobile
     ("+12125550100", False)],  # US: fixed line or mobile, the plan cannot tell
)
def test_only_fixed_lines_are_landlines(e164, landline):
    assert is_landline(e164) is landline


def test_a_numbers_kind_does_not_depend_on_the_numbers_beside_it():
    # Given a valid and an invalid number with the same first digits, in both orders
    numbers = ["029 2018 1234", "029 200 0650"]
    # When standardized in bulk
    _, forward = standardize_phones(pd.Series(numbers), "GB")
    _, backward = standardize_phones(pd.Series(numbers[::-1]), "GB")
    # Then each keeps its own kind (a landline, and a number of unknown kind)
    assert forward.tolist() == [True, False] and backward.tolist() == [False, True]


def test_addresses_use_common_abbreviations():
    assert standardize_address("12, High Street") == standardize_address("12 high st")


def test_records_without_some_columns_still_standardize():
    frame = standardize_records(pd.DataFrame({"source": ["web"], "source_id": ["1"], "last_name": ["Bill"]}), "GB")
    assert frame.loc[0, "last_name"] == "bill"
    assert frame.loc[0, "first_canonical"] is None and frame.loc[0, "email"] is None


def test_nicknames_map_to_one_canonical_name():
    frame = standardize_records(pd.DataFrame({"first_name": ["Bill", "William", "Liz", "Elizabeth"]}), "GB")
    assert frame["first_canonical"].tolist() == ["william", "william", "elizabeth", "elizabeth"]


def test_fast_phone_path_agrees_with_phonenumbers(simulated):
    # Given every phone the simulator writes (many formats), plus odd ones
    _, workspace = simulated
    phones = pd.read_parquet(workspace.lake_table("customers"))["phone"]
    phones = pd.concat([phones, pd.Series(["+1 212 555 0100", "0033 1 42 68 53 00", "12", "++44", None])])
    # When standardized in bulk, then one by one with phonenumbers
    bulk, landline = standardize_phones(phones, "GB")
    # Then both agree on every value
    for raw, fast in zip(phones, bulk, strict=True):
        assert fast == (standardize_phone(raw, "GB") if raw is not None else None), raw
    assert landline.dtype == bool and landline.any() and not landline.all()


def test_family_mailboxes_are_the_household_surname_in_the_plural():
    # Given addresses and the (standardized) surnames of the records holding them
    held = pd.DataFrame([
        ("thesmiths@x.com", "smith"), ("thejoness12@x.com", "jones"), ("the.browns@x.com", "brown"),
        ("thesmith@x.com", "smith"), ("theo1985@x.com", "walker"), ("theodore.smith@x.com", "smith"),
        ("thebest@x.net", "jones"), ("smiths@x.com", "smith"), ("theos@x.com", None), (None, "smith"),
        ("theking@x.com", None), ("theos@x.com", "o"),
    ], columns=["email", "last_name"])
    elsewhere = pd.DataFrame([(None, "king"), (None, "best")], columns=["email", "last_name"])
    records = pd.concat([held, elsewhere], ignore_index=True)
    # When classified
    family = family_mailboxes(records["email"], records["last_name"]).tolist()[: len(held)]
    # Then only "the" + a holder's surname (+ "s") (+ digits) is a family mailbox: not a surname someone
    # else holds (theking@ of a record without a surname), never an initial ("theos" is not "the O.s")
    assert family == [True, True, True, True, False, False, False, False, False, False, False, False]
