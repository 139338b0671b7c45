"""The minimum-session guard: short sessions in a row back off, a lasting one starts over."""

from bot.venues.reconnect import SessionGuard


def test_short_sessions_double_the_wait_up_to_the_cap_and_a_lasting_one_resets() -> None:
    now = [0.0]
    guard = SessionGuard(min_session_secs=5.0, max_backoff_secs=3.0, monotonic=lambda: now[0])
    waits = []
    for _ in range(4):
        guard.started()
        now[0] += 1.0  # dropped after a second
        waits.append(guard.ended())
    assert waits == [1.0, 2.0, 3.0, 3.0] and guard.short_sessions == 4
    guard.started()
    now[0] += 5.0
    assert guard.ended() == 0.0 and guard.short_sessions == 0
    guard.started()
    now[0] += 0.1
    assert guard.ended() == 1.0
