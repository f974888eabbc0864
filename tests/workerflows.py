"""Flows whose steps fail with exceptions that do not pickle (process workers import them)."""

from __future__ import annotations

import urllib.error

from flowkit import Context, Flow

flaky_api = Flow("flaky_api")


def _http_error(code: int) -> urllib.error.HTTPError:
    # an open response body, as urllib hands it over, is what makes HTTPError unpicklable
    body = open(__file__, "rb")  # noqa: SIM115
    return urllib.error.HTTPError("http://api.test/pages", code, "Service Unavailable", {}, body)  # type: ignore[arg-type]


@flaky_api.step(retries=3, retry_on=(urllib.error.HTTPError,))
def fetch(ctx: Context) -> str:
    if ctx.attempt < 3:
        raise _http_error(503)
    return f"fetched on attempt {ctx.attempt}"


gives_up = Flow("gives_up")


@gives_up.step(retries=3, giveup_on=(urllib.error.HTTPError,))
def call_api() -> str:
    raise _http_error(404)


class NeedsTwoArgs(Exception):
    """Pickles, but does not unpickle: ``args`` holds one value, ``__init__`` wants two."""

    def __init__(self, page: int, why: str) -> None:
        super().__init__(f"page {page}: {why}")
        self.page = page


needs_two = Flow("needs_two")


@needs_two.step(retries=1, retry_on=(NeedsTwoArgs,))
def parse(ctx: Context) -> int:
    if ctx.attempt == 1:
        raise NeedsTwoArgs(7, "bad row")
    return 7


isolated_api = Flow("isolated_api")


@isolated_api.step(retries=3, retry_on=(urllib.error.HTTPError,), isolate=True)
def fetch_isolated(ctx: Context) -> str:
    if ctx.attempt < 2:
        raise _http_error(503)
    return f"fetched on attempt {ctx.attempt}"
