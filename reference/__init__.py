"""Reference implementations transcribed from other projects, for differential tests and benchmarks."""
