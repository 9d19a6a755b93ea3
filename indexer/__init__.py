"""TMS Evidence KB: parse, validate, grade, index and search rTMS evidence records."""

__version__ = "0.1.0"
