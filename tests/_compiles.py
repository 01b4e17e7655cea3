"""Counts XLA backend compilations (jax.monitoring), so a test can assert that a call compiled nothing."""

import jax


class _Compiles:
    def __init__(self):
        self.count = 0
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, name, duration, **kwargs):
        if name == "/jax/core/compile/backend_compile_duration":
            self.count += 1


COMPILES = _Compiles()  # one listener per process
