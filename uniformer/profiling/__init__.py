"""Profiling: parameter and FLOP counts (fvcore), latency/throughput/memory, machine GEMM rates."""
