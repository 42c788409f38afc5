"""aipk's framework-free async provider kit. No Django imports anywhere below this package."""
