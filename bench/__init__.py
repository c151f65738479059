"""Benchmarks. ``python -m bench.throughput`` compares no-op message throughput through RabbitMQ."""
