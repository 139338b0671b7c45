"""What tests share: a manual clock, `eventually`, the simulator and the daemon as subprocesses.

- `support.clock`: `ManualClock` (time moves only when the test moves it) and `OffsetClock`
  (another clock shifted: a host whose clock is off, or wall time that sleeps advance).
- `support.wait`: `eventually` (sync) and `eventually_async`, both polling an outcome with a deadline.
- `support.sim`: `perpbot sim` as a subprocess (`standalone_sim`) and the in-process `running_simulator`.
- `support.daemon`: `perpbot run` as a subprocess (`Daemon`) and its isolated environment (`base_env`).
- `support.shared`: the ../shared fixtures and data, and the skip when they are absent.
"""
