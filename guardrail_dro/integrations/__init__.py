"""Integrations with the frameworks chat pipelines are built in. Each module imports its
framework and needs that framework's extra; this package imports none of them.

- ``langchain``: ``guarded(runnable, guard)``, ``input_rail(guard)``,
  ``output_rail(guard)`` (extra ``langchain``).
"""
