from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from annotation.models import Project
from core.events import project_group
from core.roles import OPERATE, RATE, READ_DATA

CLOSE_DENIED = 4403  # static/live.js never reconnects after it


class ProjectEventsConsumer(AsyncJsonWebsocketConsumer):
    """Pushes a project's live events (votes, runs) to anyone allowed to see the project."""

    async def connect(self):
        user = self.scope.get("user")
        project_id = self.scope["url_route"]["kwargs"]["project_id"]
        if not await self._allowed(user, project_id):
            # Accept, then close with 4403: a socket closed before it is accepted is an HTTP 403
            # on the handshake, which a browser reports as close code 1006 (a network drop), and
            # static/live.js would keep reconnecting. It joins no group, so it receives nothing.
            await self.accept()
            await self.close(code=CLOSE_DENIED)
            return
        self.group = project_group(project_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def event_message(self, event):
        await self.send_json(event["payload"])

    @database_sync_to_async
    def _allowed(self, user, project_id) -> bool:
        if user is None or not user.is_authenticated:
            return False
        if not any(user.has_perm(p) for p in (RATE, READ_DATA, OPERATE)):
            return False
        return Project.objects.filter(pk=project_id).exists()
