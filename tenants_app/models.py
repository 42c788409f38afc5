"""Tenant models (Tenant, VirtualKey, quotas, usage, ...) arrive in a later issue."""
