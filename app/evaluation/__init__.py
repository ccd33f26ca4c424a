"""The in-process evaluation of cooling controllers (``aidc evaluate-control``): the simulated facility seen as the
collectors see it (harness), the oracle and best fixed references, the baselines' commissioning, and the dispatch.

It lives in the composition root because it composes two stages that never import each other: it steps
``simulators/`` and runs ``control/``'s controllers against it. ``control/`` itself learns the plant from telemetry
only and imports no simulator module.
"""
