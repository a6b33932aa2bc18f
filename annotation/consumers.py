from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from annotation.selectors import project_visible
from core.events import Audience, project_group, user_group
from core.permissions import role_perms
from core.roles import OPERATE, RATE, READ_DATA

CLOSE_DENIED = 4403  # static/live.js never reconnects after it

# Which audiences' events (core.events.Audience) each role permission hears.
AUDIENCES = {
    RATE: {Audience.COUNTERS},
    READ_DATA: {Audience.COUNTERS, Audience.RESEARCH},
    OPERATE: {Audience.COUNTERS, Audience.RESEARCH, Audience.OPS},
}


def audiences_for(held: frozenset[str]) -> set[Audience]:
    """The audiences a user holding these role permissions hears (none without a role)."""
    return set().union(*(AUDIENCES[p] for p in held if p in AUDIENCES))


class ProjectEventsConsumer(AsyncJsonWebsocketConsumer):
    """Pushes a project's live events to the audiences the user's roles allow (raters: counters
    with no voter ids; researchers: exports too; ops: runs and rounds too), and only for a
    project they may see (a member, or ops). Anyone else is refused with 4403."""

    async def connect(self):
        project_id = self.scope["url_route"]["kwargs"]["project_id"]
        user = self.scope.get("user")
        audiences = await self._audiences(user, project_id)
        if not audiences:
            # Accept, then close with 4403: a socket closed before it is accepted is an HTTP 403
            # on the handshake, which a browser reports as close code 1006 (a network drop), and
            # static/live.js would keep reconnecting. It joins no group, so it receives nothing.
            await self.accept()
            await self.close(code=CLOSE_DENIED)
            return
        self.project_id = project_id
        # The user's own group too: an ended membership closes this socket (access_revoked).
        self.groups_joined = [*sorted(project_group(project_id, a) for a in audiences), user_group(user.pk)]
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        for group in getattr(self, "groups_joined", ()):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def event_message(self, event):
        await self.send_json(event["payload"])

    async def access_revoked(self, event):
        """The user's membership of this project ended (annotation.services.members): leave
        its groups at once and close with 4403, which static/live.js does not retry."""
        if event.get("project_id") != self.project_id:
            return
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)
        self.groups_joined = []
        await self.close(code=CLOSE_DENIED)

    @database_sync_to_async
    def _audiences(self, user, project_id) -> set[Audience]:
        """Role AND project membership, checked on connect; empty means refuse."""
        if user is None or not user.is_authenticated:
            return set()
        audiences = audiences_for(role_perms(user))
        if not audiences or not project_visible(user=user, project_id=project_id):
            return set()
        return audiences
