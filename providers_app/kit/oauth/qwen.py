"""Which API host a Qwen OAuth account must use."""

from __future__ import annotations

DASHSCOPE_COMPATIBLE_BASE_URL = "https://dashscope.aliyuncs.com/compatible-mode/v1"


def qwen_base_url(resource_url: str | None) -> str:
    """The OpenAI-compatible base URL for a Qwen OAuth account.

    qwen-code's rule: a bare host becomes ``https://<host>/v1``; a value that
    already has a scheme keeps it (its own test mock returns
    ``https://new-endpoint.com``), and ``/v1`` is not doubled.
    """
    if not resource_url or not resource_url.strip():
        return DASHSCOPE_COMPATIBLE_BASE_URL
    url = resource_url.strip().rstrip("/")
    if not url.lower().startswith(("http://", "https://")):
        url = f"https://{url}"
    return url if url.endswith("/v1") else f"{url}/v1"
