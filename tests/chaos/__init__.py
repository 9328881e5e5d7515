"""The fault suite: the whole platform on a three-broker cluster under load, broken on purpose, then checked.

``python -m tests.chaos`` (``make chaos``) runs it; ``tests/chaos/test_chaos.py`` runs the short CI version
and proves the checker catches a deliberately lossy consumer. docs/reliability.md says what it guarantees.
"""
