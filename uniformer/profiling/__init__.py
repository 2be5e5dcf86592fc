"""Profiling: parameter and FLOP counts (fvcore), latency/throughput/memory, machine GEMM rates, data-loader
throughput (``loader_bench``)."""
