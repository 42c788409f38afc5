"""One attempt at sending one alert delivery; the Celery task (tenants_app/tasks.py) owns
the retries and their backoff.

Webhook: a JSON POST signed like Stripe's webhooks -- ``x-aipk-signature: t=<unix
time>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed with the channel's secret>`` -- so a
receiver can check both who sent it and that it is fresh. Slack: ``{"text": ...}``, what
a Slack (or Mattermost, Rocket.Chat, Teams workflow) incoming webhook takes. Email:
Django's ``send_mail`` through whatever EMAIL_BACKEND is configured.

httpx (sync) because the task runs in a Celery worker, never on the gateway's event loop.
Error texts name the status or the exception type only: a target URL can carry a token.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import httpx
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from aipk_site.infra.audit import audit_record
from tenants_app.models import AlertDelivery, AlertKind, ChannelKind, DeliveryStatus

SIGNATURE_HEADER = "x-aipk-signature"
USER_AGENT = "aipk-alerts/1"


class DeliveryFailed(Exception):
    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``x-aipk-signature`` value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def _timeout() -> float:
    return float(getattr(settings, "ALERT_WEBHOOK_TIMEOUT_SECONDS", 5.0))


def _document(delivery: AlertDelivery) -> dict[str, Any]:
    return {
        "id": f"alert_{delivery.pk}",
        "event": delivery.kind,
        "subject": delivery.subject,
        "tenant": delivery.tenant.slug if delivery.tenant is not None else None,
        "created_at": delivery.created_at.isoformat(),
        "data": delivery.payload,
    }


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    # Straight through httpx's transport rather than a Client: the Client logs every
    # request's full URL at INFO, and a Slack or webhook URL carries its own token. A
    # transport never follows redirects (a webhook that moves is reconfigured, not chased).
    request = httpx.Request(
        "POST",
        url,
        content=body,
        headers={"content-type": "application/json", "user-agent": USER_AGENT, **headers},
        extensions={"timeout": httpx.Timeout(_timeout()).as_dict()},
    )
    try:
        with httpx.HTTPTransport() as transport:
            reply = transport.handle_request(request)
            reply.close()
    except httpx.HTTPError as error:
        raise DeliveryFailed(f"could not reach the receiver ({type(error).__name__})") from None
    if not 200 <= reply.status_code < 300:
        raise DeliveryFailed(
            f"the receiver answered HTTP {reply.status_code}", status=reply.status_code
        )
    return reply.status_code


def _text(delivery: AlertDelivery) -> str:
    lines = [f"[aipk] {delivery.subject}"]
    lines += [f"{name}: {value}" for name, value in delivery.payload.items()]
    return "\n".join(lines)


def _send(delivery: AlertDelivery) -> int | None:
    channel = delivery.channel
    if channel.kind == ChannelKind.WEBHOOK:
        body = json.dumps(_document(delivery), separators=(",", ":")).encode()
        headers = {
            SIGNATURE_HEADER: signature(channel.signing_secret, int(time.time()), body),
            "x-aipk-event": delivery.kind,
            "x-aipk-delivery": str(delivery.pk),
        }
        return _post(channel.target, body, headers)
    if channel.kind == ChannelKind.SLACK:
        body = json.dumps({"text": _text(delivery)}).encode()
        return _post(channel.target, body, {})
    recipients = [a.strip() for a in channel.target.split(",") if a.strip()]
    try:
        send_mail(
            subject=f"[aipk] {delivery.subject}"[:200],
            message=_text(delivery),
            from_email=None,  # DEFAULT_FROM_EMAIL
            recipient_list=recipients,
            fail_silently=False,
        )
    except Exception as error:  # noqa: BLE001 -- SMTP, DNS or backend errors alike
        raise DeliveryFailed(f"the mail backend refused it ({type(error).__name__})") from None
    return None


def alert_delivery_attempt(*, delivery_id: int, final: bool) -> str:
    """Try to send one delivery: "sent", "retry" (failed, more attempts left), "failed"
    (failed on the last attempt, or the channel is gone or off), or "done" (already
    sent: a task delivered twice by the broker sends once). Each outcome but "retry" is
    recorded in the audit log, filed under the channel's tenant."""
    delivery = (
        AlertDelivery.objects.select_related("channel", "tenant").filter(pk=delivery_id).first()
    )
    if delivery is None or delivery.status != DeliveryStatus.PENDING:
        return "done"
    delivery.attempts += 1
    try:
        if not delivery.channel.enabled and delivery.kind != AlertKind.TEST:
            final = True
            raise DeliveryFailed("the channel was switched off")
        delivery.response_status = _send(delivery)
    except DeliveryFailed as failure:
        delivery.last_error = failure.message[:300]
        delivery.response_status = failure.status
        outcome = "failed" if final else "retry"
    else:
        delivery.last_error = ""
        delivery.sent_at = timezone.now()
        outcome = "sent"
    if outcome != "retry":
        delivery.status = DeliveryStatus.SENT if outcome == "sent" else DeliveryStatus.FAILED
    with transaction.atomic():
        delivery.save(
            update_fields=["attempts", "last_error", "response_status", "sent_at", "status"]
        )
        if outcome != "retry":
            audit_record(
                action=f"alert.{outcome}",
                obj=delivery,
                actor_label="celery",
                tenant=delivery.channel.tenant,
                changes={
                    "channel": delivery.channel_id,
                    "kind": delivery.kind,
                    "attempts": delivery.attempts,
                    "response_status": delivery.response_status,
                    "error": delivery.last_error,
                },
            )
    return outcome
