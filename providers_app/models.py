"""Provider models (Provider, ApiKey, OAuthCredential, ...) arrive with the next issue."""
