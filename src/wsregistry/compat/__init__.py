"""Drop-in replacements for hand-written connection managers.

:mod:`wsregistry.compat.connection_manager` keeps the names and call shapes of
the widespread FastAPI ``ConnectionManager`` pattern (``connect``,
``disconnect``, ``send_message``, ``broadcast``, ``get_connection``,
``get_websocket_manager``, ``notify_frontend``) with the registry behind them.
It needs ``pip install 'wsregistry[fastapi]'`` (or ``[starlette]``). This
package itself imports no framework.
"""
