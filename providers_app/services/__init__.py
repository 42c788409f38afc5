"""Business logic for providers and credentials (writes: ``<entity>_<action>``; reads: selectors)."""
