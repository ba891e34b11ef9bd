"""The reference for the API: a minimal Django project (no DRF; `startproject` middleware).

Served by gunicorn exactly like the project, it reads the same SQLite file (BENCH_DB).
"""
