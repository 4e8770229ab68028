"""guardrail-dro: guardrails trained from crowd + LLM labels."""

__version__ = "0.1.0"
