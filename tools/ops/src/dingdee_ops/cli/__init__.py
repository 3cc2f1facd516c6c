"""The ``dingdee`` command line."""
