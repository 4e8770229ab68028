"""``python -m guardrail_dro`` is the ``guardrail-dro`` command."""

from guardrail_dro.cli import main

main()
