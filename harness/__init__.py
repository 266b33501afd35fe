"""Throw-away local stacks for the tests and the benchmarks: redis-server on a free port, API
and worker processes, and the waits that go with them (`harness.processes`), plus a way to
fill a Redis to `maxmemory` (`harness.redis_memory`). Shared so `bench/` never imports
`tests/`."""
