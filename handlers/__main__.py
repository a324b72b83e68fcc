"""`python -m handlers` (what `symbia-integrations worker` runs): one worker process."""

import asyncio
import logging

from handlers.app import build_app
from service.credentials import CredentialsFileError
from service.logs import configure, mask_url
from service.providers.configured import check_provider_config
from service.settings import Settings


def main() -> None:
    settings = Settings()
    configure(settings.log_level)
    if not settings.nats_url:
        raise SystemExit("NATS_URL is not set: a worker joins an existing NATS server "
                         "(use `symbia-integrations serve` to start one)")
    if problem := check_provider_config(settings):
        raise SystemExit(problem)
    logging.getLogger("symbia.integrations.worker").info("connecting to %s", mask_url(settings.nats_url))
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        uvloop = None
    try:
        app = build_app(settings)
    except CredentialsFileError as exc:     # refuse to start, with the reason and no traceback
        raise SystemExit(f"worker not started: {exc}") from None
    if uvloop is not None:
        uvloop.run(app.run(log_level=logging.WARNING))
    else:  # pragma: no cover
        asyncio.run(app.run(log_level=logging.WARNING))


if __name__ == "__main__":
    main()
