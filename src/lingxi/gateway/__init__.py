"""The OpenAI-compatible gateway: routing, semantic cache, keys, quotas, metrics and web UI."""
