"""Reusable contract suites for spaces, strategies and stores (for plugins and our own tests)."""
