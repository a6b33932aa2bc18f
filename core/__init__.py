"""Plumbing shared by the apps: errors and codes, roles and permissions, the API base,
events, advisory locks, the task decorator, atomic files and the job kernel."""
