"""Business logic for providers and credentials.

Writes: ``<entity>_<action>``; reads: selectors.
"""
