"""Test helpers shared by several test modules (never import from a ``test_*`` module): generated
image files, pickle payloads, gloo process spawning."""
