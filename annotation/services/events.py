"""Live events to websocket groups, sent after the transaction that caused them commits."""

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

log = logging.getLogger(__name__)


def project_group(project_id: int) -> str:
    return f"project.{project_id}"


def event_send_on_commit(*, group: str, payload: dict) -> None:
    def send() -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        try:
            async_to_sync(layer.group_send)(group, {"type": "event.message", "payload": payload})
        except Exception:  # a lost live update must never fail the write that caused it
            log.exception("could not send event to %s", group)

    transaction.on_commit(send)
