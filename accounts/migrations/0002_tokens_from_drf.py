"""Keep the tokens clients already hold: every DRF `authtoken` token becomes an ApiToken (its
SHA-256, its first characters, a fresh lifetime, bound to the user's current password). The
old table is left as it was."""

import hashlib
from datetime import timedelta

from django.conf import settings
from django.db import migrations
from django.utils import timezone
from django.utils.crypto import salted_hmac


def forwards(apps, schema_editor):
    Token = apps.get_model("authtoken", "Token")
    ApiToken = apps.get_model("accounts", "ApiToken")
    expires = timezone.now() + timedelta(days=settings.API_TOKEN_TTL_DAYS)
    rows = []
    for token in Token.objects.select_related("user").iterator():
        mark = salted_hmac("accounts.ApiToken.password_mark", token.user.password, algorithm="sha256").hexdigest()
        rows.append(
            ApiToken(
                key=hashlib.sha256(token.key.encode()).hexdigest(),
                prefix=token.key[:8],
                user_id=token.user_id,
                name="api (from before expiry)",
                expires_at=expires,
                password_mark=mark,
            )
        )
    ApiToken.objects.bulk_create(rows, ignore_conflicts=True)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("authtoken", "0004_alter_tokenproxy_options"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
