"""The wsregistry demo: FastAPI + a small web page (sign in, presence, DMs, rooms, announcements).

Run it with ``make demo`` (or ``uvicorn --app-dir examples demo.app:app``).
"""
