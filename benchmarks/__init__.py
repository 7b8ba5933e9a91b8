"""Benchmarks: each module's ``main()`` measures one ratio in a single run and returns its summary line.

Run them all with ``./dev bench`` (``python -m benchmarks``). Not run in CI: they take minutes and their
numbers depend on the machine; the ratios (not the absolute times) are what the issues set goals for.
"""
