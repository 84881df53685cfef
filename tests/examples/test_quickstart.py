from __future__ import annotations

import pytest
import quickstart


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend  # the core tour runs on both


@pytest.mark.anyio
async def test_quickstart_tour(capsys: pytest.CaptureFixture[str]) -> None:
    await quickstart.main()
    out = capsys.readouterr().out
    assert "to alice: 2" in out
    assert "room-1 except alice's tab 1: 1" in out
    assert "everyone: 3" in out
    assert "alice online: True tabs: 2" in out
    assert "alice tab 1 got: [{'type': 'notice', 'text': 'hi'}, {'type': 'announcement'}]" in out
    assert "bob got: ['room msg', {'type': 'announcement'}]" in out
