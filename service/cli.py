"""`symbia-integrations`: serve | worker | api | keys."""

import argparse
import os
import sys

from service import __version__
from service.auth.keys import KeyStore
from service.logs import configure
from service.settings import Settings


def _exec_module(module: str) -> None:
    os.execv(sys.executable, [sys.executable, "-m", module])


def _serve(args: argparse.Namespace) -> int:
    from service.supervisor import Supervisor

    overrides = {"workers": args.workers} if args.workers else {}
    settings = Settings(**overrides)
    configure(settings.log_level)
    return Supervisor(settings).run()


def _keys(args: argparse.Namespace) -> int:
    settings = Settings()
    store = KeyStore(settings.key_store_path)
    if args.keys_command == "create":
        record, plaintext = store.create(args.name, org=args.org, admin=args.admin)
        print(f"created key {record.id} ({'admin, ' if record.admin else ''}org {record.org or 'any'}):")
        print(plaintext)
        print("This is the only time the key is shown; only its hash is stored.", file=sys.stderr)
        return 0
    if args.keys_command == "list":
        records = store.records()
        if not records:
            print(f"no keys in {settings.key_store_path}")
        for r in records:
            state = f"revoked {r.revoked_at}" if r.revoked_at else "active"
            print(f"{r.id}  {state:<30} admin={'yes' if r.admin else 'no ':<3}  org={r.org or '*':<16} "
                  f"created {r.created_at}  {r.name}")
        return 0
    if store.revoke(args.key_id):
        print(f"revoked {args.key_id}")
        return 0
    print(f"no active key {args.key_id}", file=sys.stderr)
    return 1


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="symbia-integrations",
        description="Symbia Integrations gateway. Settings come from the environment and .env (see README).",
    )
    p.add_argument("--version", action="version", version=__version__)
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run everything: embedded NATS (if NATS_URL is unset), workers and the "
                                         "HTTP adapter on INTEGRATIONS_PORT (5007)")
    serve.add_argument("--workers", type=int, default=None, help="worker processes (INTEGRATIONS_WORKERS, 1)")
    serve.set_defaults(func=_serve)

    worker = sub.add_parser("worker", help="run one worker process (FastStream subscribers) on NATS_URL")
    worker.set_defaults(func=lambda _a: _exec_module("handlers"))

    api = sub.add_parser("api", help="run the HTTP adapter on INTEGRATIONS_HOST:INTEGRATIONS_PORT against NATS_URL")
    api.set_defaults(func=lambda _a: _exec_module("api"))

    keys = sub.add_parser("keys", help="manage local caller API keys (hashes in INTEGRATIONS_DATA_DIR)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key and print it once")
    create.add_argument("--name", default="cli", help="a label for the key")
    create.add_argument("--org", default=None, help="restrict the key to one organization (default: any)")
    create.add_argument("--admin", action="store_true", help="grant the integrations:admin entitlement")
    keys_sub.add_parser("list", help="list keys (never the keys themselves)")
    revoke = keys_sub.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id")
    keys.set_defaults(func=_keys)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
