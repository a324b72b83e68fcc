"""`python -m api` (what `symbia-integrations api` runs): the HTTP adapter under uvicorn
with uvloop and httptools and no access log (the measured fast configuration)."""

import logging

import uvicorn

from api.settings import ApiSettings


def main() -> None:
    settings = ApiSettings()
    logging.basicConfig(level=getattr(logging, settings.log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=int(settings.drain_timeout_s),
    )


if __name__ == "__main__":
    main()
