"""Standardizers fold Unicode forms and drop format characters first: an address or number that looks
the same is the same (a zero-width space must not slip an erased person's e-mail past suppression)."""

from __future__ import annotations

import pandas as pd

from features.identity.standardize import (
    EmailRules,
    clean_identifier,
    standardize_email,
    standardize_email_leniently,
    standardize_name,
    standardize_phone,
    standardize_phones,
)

RULES = EmailRules()


def test_zero_width_and_full_width_characters_do_not_make_another_email():
    for written in ["grace.davies1991@icloud.com\u200b", "\ufeffgrace.davies1991@icloud.com",
                    "grace.davies1991\u200d@icloud.com", "ｇrace.davies1991＠icloud.com"]:
        assert standardize_email(written, RULES) == "grace.davies1991@icloud.com", written


def test_phones_written_with_full_width_digits_or_zero_width_spaces_are_the_same_number():
    assert standardize_phone("０７６５５\u200b570373", "GB") == "+447655570373"
    phones, _ = standardize_phones(pd.Series(["０７６５５\u200b570373", "07655570373", None], index=[4, 5, 6]), "GB")
    assert phones.tolist() == ["+447655570373", "+447655570373", None] and phones.index.tolist() == [4, 5, 6]


def test_names_and_identifiers_drop_format_characters():
    assert standardize_name("Gr\u200bace") == standardize_name("Grace") == "grace"
    assert clean_identifier(" C000000050\u200b ") == "C000000050"


def test_an_address_is_taken_out_of_the_ways_people_write_one():
    for written in ["Paul Jones <pauljones1970@gmail.com>", "mailto:pauljones1970@gmail.com",
                    "MAILTO:pauljones1970@gmail.com?subject=erase", "<pauljones1970@gmail.com>",
                    "\"Paul\" <P.A.U.L.JONES1970+promo@GoogleMail.com>", "ｐauljones1970@gmail.com\u200b"]:
        assert standardize_email_leniently(written, RULES) == "pauljones1970@gmail.com", written
    assert standardize_email("Paul Jones <pauljones1970@gmail.com>", RULES) != "pauljones1970@gmail.com"
