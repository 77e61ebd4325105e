"""A loopback service's coroutine run in a thread of this process (tests, benchmarks)."""

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Self

Serve = Callable[[threading.Event], Coroutine[Any, Any, None]]


class ServiceThread:
    """start() returns once `serve` has set its event (it listens); stop() cancels it."""

    def __init__(self, what: str, serve: Serve, start_timeout: float = 20.0) -> None:
        self.what = what  # "the responder on 127.0.0.1:10026", for errors
        self._serve = serve
        self._start_timeout = start_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._task = self._loop.create_task(self._serve(started))
            try:
                self._loop.run_until_complete(self._task)
            except asyncio.CancelledError:
                pass  # stopped
            except Exception as exc:
                failure.append(exc)
                started.set()
            finally:
                self._loop.close()

        self._thread = threading.Thread(target=run, name=self.what, daemon=True)
        self._thread.start()
        if not started.wait(self._start_timeout):
            raise RuntimeError(f"{self.what} did not start listening")
        if failure:
            raise RuntimeError(f"{self.what} could not listen") from failure[0]
        return self

    def call(self, coroutine: Coroutine[Any, Any, None], timeout: float = 30.0) -> None:
        """Run a coroutine on the service's own event loop and wait for it."""
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        if self._loop is not None and self._task is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._task.cancel)
        if self._thread is not None:
            self._thread.join(timeout)
