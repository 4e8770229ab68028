"""``python -m annotators.testing --port 8000 [--latency 0.3]``: serve the keyword demo
rule until interrupted, for subprocess tests, benchmarks and demos (see ``server.main``).
"""

from annotators.testing.server import main

__all__ = ["main"]

if __name__ == "__main__":
    main()
