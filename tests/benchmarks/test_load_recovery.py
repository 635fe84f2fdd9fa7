"""The load benchmark's recovery figure: when latency came back within the bar after a worker was killed."""

from tests.benchmarks.load import recovered_after


def requests(latencies_by_second: list[list[float]], errors_at: set[int] = frozenset()) -> list[dict]:
    """Records as `open_loop_records` makes them: one list of latencies per scheduled second."""
    return [{"at": second + i / len(row), "ms": ms, "late_ms": 0.0, "error": "HTTP 500" if second in errors_at else None}
            for second, row in enumerate(latencies_by_second) for i, ms in enumerate(row)]


def test_recovery_is_the_end_of_the_last_slow_window_after_the_kill():
    # Given: fast before the kill at 2 s, slow in the two seconds after, fast again
    records = requests([[3.0] * 10, [3.0] * 10, [900.0] * 10, [40.0] * 10, [4.0] * 10, [4.0] * 10])
    # When / then: back within 15 ms from 2 s after the kill
    assert recovered_after(records, since=2.0, bar_ms=15.0) == 2.0


def test_an_error_counts_as_not_recovered():
    records = requests([[3.0] * 10, [3.0] * 10, [3.0] * 10, [3.0] * 10], errors_at={2})
    assert recovered_after(records, since=1.0, bar_ms=15.0) == 2.0


def test_no_slow_window_is_immediate_and_a_slow_last_window_is_never():
    steady = requests([[3.0] * 10] * 4)
    assert recovered_after(steady, since=1.0, bar_ms=15.0) == 0.0
    still_slow = requests([[3.0] * 10, [3.0] * 10, [50.0] * 10, [50.0] * 10])
    assert recovered_after(still_slow, since=2.0, bar_ms=15.0) is None
