"""Side-by-side performance measurements (run as ``python -m benchmarks.<name>``); never timed tests."""
