"""Token lifetime on the sandbox clock, QPS windows, the global penalty, the monthly quota."""

from __future__ import annotations

import time

import pytest

from dingdee_sandbox.dingtalk.config import Faults
from dingdee_sandbox.dingtalk.limits import Limiter
from dingdee_sandbox.dingtalk.tokens import TOKEN_TTL_MS, TokenStore

T0 = 1_790_000_000_000


class TestTokens:
    def test_reissue_while_valid_returns_the_same_token_and_extends_it(self) -> None:
        store = TokenStore()
        first = store.issue("app", "old", T0)
        assert store.issue("app", "old", T0 + TOKEN_TTL_MS - 1) == first
        assert store.check(first, "old", T0 + 2 * TOKEN_TTL_MS - 2) == ("ok", "app")
        assert store.check(first, "old", T0 + 2 * TOKEN_TTL_MS - 1) == ("expired", None)

    def test_after_expiry_a_new_token_and_the_old_one_is_rejected(self) -> None:
        store = TokenStore()
        first = store.issue("app", "old", T0)
        second = store.issue("app", "old", T0 + TOKEN_TTL_MS)
        assert second != first
        assert store.check(first, "old", T0 + TOKEN_TTL_MS) == ("expired", None)
        assert store.check(second, "old", T0 + TOKEN_TTL_MS) == ("ok", "app")

    def test_missing_unknown_and_revoked(self) -> None:
        store = TokenStore()
        token = store.issue("app", "old", T0)
        assert store.check(None, "old", T0)[0] == "missing"
        assert store.check("nope", "old", T0)[0] == "invalid"
        assert store.revoke("other-app") == 0
        assert store.revoke("app") == 1
        assert store.check(token, "old", T0)[0] == "invalid"
        assert store.issue("app", "old", T0) != token

    def test_cross_host_acceptance_is_a_flag(self) -> None:
        store = TokenStore()
        token = store.issue("app", "v1", T0)
        assert store.check(token, "old", T0, cross_host=True) == ("ok", "app")
        assert store.check(token, "old", T0, cross_host=False)[0] == "invalid"


class TestLimiter:
    def test_app_window_allows_qps_calls_per_sliding_second(self) -> None:
        limiter = Limiter()
        verdicts = [limiter.over_app_qps("a", "get", 3, count_rejected=False) for _ in range(5)]
        assert verdicts == [False, False, False, True, True]
        assert not limiter.over_app_qps("a", "listids", 3, count_rejected=False)  # other API
        assert not limiter.over_app_qps("b", "get", 3, count_rejected=False)  # other app
        time.sleep(1.05)
        assert not limiter.over_app_qps("a", "get", 3, count_rejected=False)

    def test_rejected_calls_fill_the_window_only_when_flagged(self) -> None:
        counted, free = Limiter(), Limiter()
        for limiter, flag in ((counted, True), (free, False)):
            for _ in range(5):
                limiter.over_app_qps("a", "get", 3, count_rejected=flag)
        assert len(counted.windows[("a", "get")]) == 5
        assert len(free.windows[("a", "get")]) == 3

    def test_global_limit_starts_a_penalty_on_the_sandbox_clock(self) -> None:
        limiter = Limiter()
        assert [limiter.over_global_qps("get", 2, T0, 5000) for _ in range(3)] == [
            False,
            False,
            True,
        ]
        assert limiter.penalty_until_ms["get"] == T0 + 5000
        time.sleep(1.05)  # the second is over, the penalty is not
        assert limiter.over_global_qps("get", 2, T0 + 4999, 5000)
        assert not limiter.over_global_qps("get", 2, T0 + 5000, 5000)

    def test_monthly_quota_resets_with_the_month(self) -> None:
        limiter = Limiter()
        assert [limiter.meter("2026-11", 2) for _ in range(3)] == [True, True, False]
        assert limiter.metered_calls == 2
        assert limiter.meter("2026-12", 2)
        assert limiter.metered_calls == 1
        assert all(limiter.meter("2026-12", None) for _ in range(10))


class TestFaults:
    def test_patch_refuses_unknown_knobs_and_bad_rates(self) -> None:
        faults = Faults()
        assert faults.patched({"busy_rate": 0.5}).busy_rate == 0.5
        with pytest.raises(ValueError, match="unknown knobs"):
            faults.patched({"bussy_rate": 0.5})
        with pytest.raises(ValueError, match="busy_rate"):
            faults.patched({"busy_rate": 1.5})
        with pytest.raises(ValueError, match="sum"):
            faults.patched({"busy_rate": 0.6, "http_500_rate": 0.6})
        with pytest.raises(ValueError, match="qps"):
            faults.patched({"qps": 0})
