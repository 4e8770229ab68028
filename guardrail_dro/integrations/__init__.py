"""Integrations with the frameworks chat pipelines are built in. Each module imports its
framework and needs that framework's extra; this package imports none of them.

- ``langchain``: ``guarded(runnable, guard)``, ``input_rail(guard)``,
  ``output_rail(guard)`` (extra ``langchain``).
- ``openai_agents``: ``input_guardrail(guard)``, ``output_guardrail(guard)``,
  ``tool_input_guardrail(guard)``, ``tool_output_guardrail(guard)``: the OpenAI Agents
  SDK's own guardrail objects (extra ``agents``).
"""
