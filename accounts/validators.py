"""A password validator Django lacks: the password must not contain the username.

Django's UserAttributeSimilarityValidator compares the whole password with the username, so
a repeated username ("rater1rater1": similarity 0.67, under its 0.7) passes it."""

from django.core.exceptions import ValidationError


class UsernameInPasswordValidator:
    min_username = 3  # a two-letter username would refuse too many passwords

    def validate(self, password, user=None):
        username = (getattr(user, "get_username", lambda: "")() or "").lower()
        if len(username) >= self.min_username and username in password.lower():
            raise ValidationError("The password must not contain the username.", code="password_has_username")

    def get_help_text(self):
        return "Your password can't contain your username."
