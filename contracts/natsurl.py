"""How every process reads NATS_URL: a comma-separated list of servers whose first entry may
carry `user:password@` or `token@`. Shared by the workers and the api (which imports no service
code), so it lives beside the wire contracts; pure URL handling, no I/O."""

from urllib.parse import unquote, urlsplit, urlunsplit


def split_credentials(urls: list[str]) -> tuple[list[str], dict[str, str]]:
    """The URLs without user and password (or token), and those of the first URL that carries
    them, as client options: that way they apply to every server, including the cluster nodes the
    client only learns from the server (nats-py connects to those without credentials otherwise)."""
    auth: dict[str, str] = {}
    clean = []
    for url in urls:
        parsed = urlsplit(url)
        if parsed.username and not auth:
            if parsed.password is None:
                auth = {"token": unquote(parsed.username)}
            else:
                auth = {"user": unquote(parsed.username), "password": unquote(parsed.password)}
        if parsed.username:
            parsed = parsed._replace(netloc=parsed.netloc.rpartition("@")[2])
        clean.append(urlunsplit(parsed))
    return clean, auth
