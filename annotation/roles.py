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
