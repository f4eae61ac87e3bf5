"""The version of handgrad, kept in this one place (pyproject.toml and handgrad.__version__ read it)."""

__version__ = "0.3.0"
