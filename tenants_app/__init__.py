"""Tenants, virtual keys, quotas, budgets, usage and billing (arrives in later issues)."""
