"""Typed pipeline configuration: the YAML files as frozen dataclasses, checked on load."""
