"""Contenders: each one a module run as a fresh process that prints one JSON line."""
