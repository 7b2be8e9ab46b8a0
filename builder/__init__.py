"""Builds what domains boot from and what providers ship."""
