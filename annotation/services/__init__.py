"""Writes. One module per domain; every function is `<entity>_<action>(*, ...)`."""
