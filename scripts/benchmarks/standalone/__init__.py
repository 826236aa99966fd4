"""Programs that the benchmarks run as processes of their own."""
