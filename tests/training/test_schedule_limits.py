"""Round settings that would overflow later are refused when saved (issue 15 item 5c)."""

import pytest

from core.errors import ServiceError
from training.services.schedules import round_settings_update

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "fields",
    [
        {"enabled": True, "every_hours": 2**31 - 1},
        {"priority": 2**31},
        {"eval_priority": -(2**31) - 1},
        {"pairs_to_publish": 2**40},
        {"blocklist": "/(?<=x)y/"},
        {"reward_config": {"learning_rate": 10**400}},
    ],
    ids=["every_hours", "priority", "eval_priority", "pairs_to_publish", "blocklist", "reward_config"],
)
def test_values_that_overflow_later_are_refused_and_nothing_is_saved(make_project, fields):
    project = make_project()
    before = round_settings_update(project=project)
    with pytest.raises(ServiceError):
        round_settings_update(project=project, **fields)
    after = round_settings_update(project=project)
    assert (after.every_hours, after.priority, after.blocklist) == (
        before.every_hours,
        before.priority,
        before.blocklist,
    )
