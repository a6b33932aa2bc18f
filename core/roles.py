"""Roles are Django groups carrying the custom permissions declared on Project.

rater       annotation.rate
researcher  annotation.read_data
ops         annotation.operate + annotation.read_data
staff       user.is_staff (Django admin), set per user
"""

RATE = "annotation.rate"
READ_DATA = "annotation.read_data"
OPERATE = "annotation.operate"

ROLE_PERMISSIONS: dict[str, list[str]] = {
    "rater": [RATE],
    "researcher": [READ_DATA],
    "ops": [OPERATE, READ_DATA],
}


def role_groups_ensure() -> None:
    """Create the role groups with their permissions where missing (idempotent).

    The data migration does this on `migrate`; tests that flush the database (transactional
    tests) call it again, since a flush empties auth_group but re-creates the permissions.
    """
    from django.contrib.auth.models import Group, Permission

    for role, perms in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        codenames = [p.split(".", 1)[1] for p in perms]
        group.permissions.set(
            Permission.objects.filter(content_type__app_label="annotation", codename__in=codenames)
        )
