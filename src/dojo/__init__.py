"""Dojo: fleet video and drive logs in, better driving networks out."""

__version__ = "0.1.0"
