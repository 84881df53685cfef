"""Adapters binding the registry to WebSocket servers.

Each adapter is an optional extra, imported only when its module is:
``wsregistry.adapters.websockets`` (``pip install 'wsregistry[websockets]'``),
``wsregistry.adapters.starlette`` (``[starlette]``) and
``wsregistry.adapters.fastapi`` (``[fastapi]``).
"""
