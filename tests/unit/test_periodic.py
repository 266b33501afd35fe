"""The API's background loops: a failing step does not end a loop, and `Loops` stops every
loop it started, in reverse order."""

from __future__ import annotations

import asyncio

from api.periodic import Loops, Periodic


def test_a_failing_step_is_retried_and_loops_stop_in_reverse_order() -> None:
    calls: list[str] = []

    def step(name: str, fail: bool = False):
        async def run() -> None:
            calls.append(name)
            if fail and calls.count(name) == 1:
                raise RuntimeError("first step fails")

        return run

    class Recorded(Periodic):
        async def stop(self, timeout_s: float = 2.0) -> None:
            calls.append(f"stop {self._name}")
            await super().stop(timeout_s)

    async def scenario() -> None:
        first, second = Recorded("a", 0.001, step("a", fail=True)), Recorded("b", 0.001, step("b"))
        loops = Loops(first, second)
        loops.start()
        for _ in range(200):  # until each loop has run twice, or 2 s
            if calls.count("a") >= 2 and calls.count("b") >= 2:
                break
            await asyncio.sleep(0.01)
        await loops.stop()
        assert first._task is not None and first._task.done()
        assert second._task is not None and second._task.done()

    asyncio.run(scenario())
    assert calls.count("a") >= 2  # the failure was logged and the loop went on
    assert [c for c in calls if c.startswith("stop")] == ["stop b", "stop a"]
