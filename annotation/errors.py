class ServiceError(Exception):
    """A request the service refuses, with a message fit to show the person who sent it."""

    status = 400

    def __init__(self, message: str, *, code: str = "invalid"):
        super().__init__(message)
        self.message = message
        self.code = code


class NoLease(ServiceError):
    status = 409


class NotFound(ServiceError):
    status = 404


def error_response(exc: ServiceError):
    """A ServiceError as the API's JSON error body: {"detail": message, "code": code}."""
    from rest_framework.response import Response

    return Response({"detail": exc.message, "code": exc.code}, status=exc.status)
