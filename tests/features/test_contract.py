"""The documented contract and the contract in code must not drift apart."""

from __future__ import annotations

import re

from cdp.workspace import REPOSITORY_ROOT
from features.contract import CONTRACTS

DOC = (REPOSITORY_ROOT / "docs" / "data-contract.md").read_text()


def test_the_doc_describes_exactly_the_tables_in_code():
    documented = set(re.findall(r"^### `(\w+)`", DOC, flags=re.MULTILINE))
    assert documented == set(CONTRACTS)


def test_every_column_and_key_is_documented_under_its_table():
    sections = dict(re.findall(r"^### `(\w+)`(.*?)(?=^### |^## |\Z)", DOC, flags=re.MULTILINE | re.DOTALL))
    for name, contract in CONTRACTS.items():
        for column in contract.column_names:
            assert column in sections[name], f"{name}.{column} missing from docs/data-contract.md"
        assert f"Key: `{', '.join(contract.primary_key)}`" in sections[name] or (
            "Key: all" in sections[name]
        ), f"{name} key not documented"


def test_required_columns_have_no_pii():
    for contract in CONTRACTS.values():
        assert not set(contract.required_columns) & set(contract.pii_columns), contract.name
