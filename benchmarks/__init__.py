"""WatchLLM benchmarks: mock upstream, pass-through reference proxy, load generator, scenarios, soak.

Run ``python -m benchmarks.run --quick`` (or ``make bench-quick``); see benchmarks/README.md.
"""
