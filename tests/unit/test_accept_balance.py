"""The API's processes share one listening socket; each must take one connection per wake-up."""

from __future__ import annotations

import os

import pytest

from api.__main__ import balance_accepts


def test_balance_accepts_sets_libuv_single_accept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UV_TCP_SINGLE_ACCEPT", "")  # so that the undo restores the original
    monkeypatch.delenv("UV_TCP_SINGLE_ACCEPT")
    balance_accepts()

    assert os.environ["UV_TCP_SINGLE_ACCEPT"] == "1"


def test_balance_accepts_keeps_an_operators_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UV_TCP_SINGLE_ACCEPT", "0")
    balance_accepts()

    assert os.environ["UV_TCP_SINGLE_ACCEPT"] == "0"
