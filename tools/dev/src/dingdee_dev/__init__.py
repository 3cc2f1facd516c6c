"""dingdee local development: embedded broker, supervised processes and the ``make run`` stack,
above the operator tools."""
