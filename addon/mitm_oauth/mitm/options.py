"""The addon's own options: declared, checked, and copied onto the parts that read them."""

from __future__ import annotations

from mitmproxy import ctx, exceptions
from mitmproxy.addonmanager import Loader

from ..oauth.backoff import Backoff
from ..oauth.cache import DEFAULT_EXPIRY_DELTA, DEFAULT_LIFETIME, DEFAULT_REFRESH_AHEAD, TokenCache
from ..oauth.client import DEFAULT_TIMEOUT, TokenClient
from .replay import DEFAULT_DEADLINE

MINIMUMS = {
    "oauth_expiry_delta": 0,
    "oauth_default_lifetime": 1,
    "oauth_token_timeout": 1,
    "oauth_refresh_ahead": 1,
    "oauth_backoff_max": 1,
    "oauth_replay_timeout": 1,
}
"""The smallest value each numeric option takes: below it, a setting means nothing useful."""


def add_options(loader: Loader) -> None:
    """Every `oauth_*` option but `oauth_allowed_clients` (see `AllowedClients`)."""
    loader.add_option(
        "oauth_rules", str, "rules.yaml", "Rules file: which requests get which token."
    )
    loader.add_option(
        "oauth_expiry_delta",
        int,
        int(DEFAULT_EXPIRY_DELTA),
        "Seconds before its expiry at which a token is no longer used (at most half its lifetime).",
    )
    loader.add_option(
        "oauth_default_lifetime",
        int,
        int(DEFAULT_LIFETIME),
        "Seconds a token is kept when the token endpoint sends no expires_in.",
    )
    loader.add_option(
        "oauth_token_timeout",
        int,
        int(DEFAULT_TIMEOUT),
        "Seconds allowed for a whole token exchange.",
    )
    loader.add_option(
        "oauth_refresh_ahead",
        int,
        int(DEFAULT_REFRESH_AHEAD * 100),
        "Percent of a token's lifetime after which it is refreshed in the background "
        "(100: only when it expires).",
    )
    loader.add_option(
        "oauth_backoff_max",
        int,
        int(Backoff.maximum),
        "Longest wait, in seconds, between attempts at a failing token endpoint.",
    )
    loader.add_option("oauth_reload", bool, True, "Re-read the rules file when it changes.")
    loader.add_option(
        "oauth_replay_timeout",
        int,
        int(DEFAULT_DEADLINE),
        "Seconds allowed for a whole retry_on_401 replay, its answer included.",
    )
    loader.add_option(
        "oauth_show_exchanges",
        str,
        "auto",
        "Show token exchanges as flows (secrets redacted): on, off, or auto "
        "(on in mitmweb and the console, off in mitmdump).",
        choices=("auto", "on", "off"),
    )
    loader.add_option(
        "oauth_log_json",
        str,
        "",
        "Append one JSON line per token fetch, failure, purge and rules reload to this file.",
    )
    loader.add_option(
        "oauth_redact_flows",
        bool,
        True,
        "Once a request has been sent, replace its token in the flow with a fingerprint, "
        "so that saved and displayed flows hold no token.",
    )


def check(updated: set[str]) -> None:
    """Raise `OptionsError` for a value out of range: mitmproxy then keeps the previous one."""
    for option, minimum in MINIMUMS.items():
        if option in updated and getattr(ctx.options, option) < minimum:
            raise exceptions.OptionsError(f"{option} must be at least {minimum}")
    if ctx.options.oauth_refresh_ahead > 100:
        raise exceptions.OptionsError("oauth_refresh_ahead is a percentage: at most 100")


def configure_fetching(cache: TokenCache, client: TokenClient) -> None:
    """Copy the token options onto the cache and the client, which read them per fetch."""
    cache.expiry_delta = ctx.options.oauth_expiry_delta
    cache.default_lifetime = ctx.options.oauth_default_lifetime
    cache.refresh_ahead = ctx.options.oauth_refresh_ahead / 100
    cache.backoff = Backoff(maximum=ctx.options.oauth_backoff_max)
    client.timeout = ctx.options.oauth_token_timeout
