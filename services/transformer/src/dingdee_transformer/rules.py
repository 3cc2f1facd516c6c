"""Mapping rules, compiled once per flow: the public entry of the rule modules.

A field rule runs source → pick → trim → map/lookup → convert → checks → ref. Problems are
appended to an error list as :class:`FieldError` (never raised), so one run reports every broken
field of an approval at once. The parts live in their own modules:

- :mod:`~dingdee_transformer.rulebase`: the context, errors and the omitted marker they share;
- :mod:`~dingdee_transformer.templates`: templates and their placeholders;
- :mod:`~dingdee_transformer.fieldrule`: the sources, steps and checks of one field rule;
- :mod:`~dingdee_transformer.fieldset`: a set of rules as one Model builder, and ``rows`` rules;
- :mod:`~dingdee_transformer.crosschecks`: cross-field checks over the built Model.
"""

from __future__ import annotations

from dingdee_transformer.crosschecks import CrossChecker, compile_checks
from dingdee_transformer.fieldset import ModelBuilder, compile_fields
from dingdee_transformer.rulebase import OMIT, Context, FieldError, LookupProblem, number_text
from dingdee_transformer.templates import Template, compile_template, form_names

__all__ = [
    "OMIT",
    "Context",
    "CrossChecker",
    "FieldError",
    "LookupProblem",
    "ModelBuilder",
    "Template",
    "compile_checks",
    "compile_fields",
    "compile_template",
    "form_names",
    "number_text",
]
