"""The modules the benchmark's workers and loaders import: one per contender, plus the shared
completion counter (:mod:`bench.apps.common`)."""
