"""dingdee operator tools: the ``dingdee`` CLI above the services (topics, mapping, DLQ, reconcile,
quota, doctor)."""
