"""The addon's own options: declared, checked, and copied onto the parts that read them."""

from __future__ import annotations

import difflib

from mitmproxy import ctx, exceptions
from mitmproxy.addonmanager import Loader
from mitmproxy.optmanager import OptManager

from ..oauth.backoff import Backoff
from ..oauth.cache import DEFAULT_EXPIRY_DELTA, DEFAULT_LIFETIME, DEFAULT_REFRESH_AHEAD, TokenCache
from ..oauth.client import DEFAULT_TIMEOUT, TokenClient
from .replay import DEFAULT_DEADLINE
from .streaming import CHOICES as STREAM_CHOICES

MINIMUMS = {
    "oauth_expiry_delta": 0,
    "oauth_default_lifetime": 1,
    "oauth_token_timeout": 1,
    "oauth_refresh_ahead": 1,
    "oauth_backoff_max": 1,
    "oauth_replay_timeout": 1,
}
"""The smallest value each numeric option takes: below it, a setting means nothing useful."""
SHOW_EXCHANGES = ("auto", "on", "off")


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
        choices=SHOW_EXCHANGES,
    )
    loader.add_option(
        "oauth_store",
        str,
        "memory",
        "Where tokens are shared with other mitmdump processes: memory (this process only), "
        "sqlite:PATH (one machine), redis://[user:password@]host:port[/db], rediss://… or "
        "unix:///path (a fleet). ${VAR} comes from the environment.",
    )
    loader.add_option(
        "oauth_prefetch",
        bool,
        False,
        "At start-up and after each reload, get every credential set's token before a "
        "request asks for one.",
    )
    loader.add_option(
        "oauth_stream_responses",
        str,
        "events",
        "Responses passed on as they arrive, their bodies not kept: events (server-sent "
        "events), all, or off (as mitmproxy's stream_large_bodies decides).",
        choices=STREAM_CHOICES,
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
    for option, choices in (
        ("oauth_show_exchanges", SHOW_EXCHANGES),
        ("oauth_stream_responses", STREAM_CHOICES),
    ):
        if getattr(ctx.options, option) not in choices:  # mitmproxy does not check
            raise exceptions.OptionsError(f"{option} must be one of {', '.join(choices)}")


def apply_given(options: OptManager) -> list[str]:
    """Set the `oauth_*` options given at start-up now that they are declared, one by one;
    what is wrong with each that cannot be set.

    mitmproxy keeps `--set` options for the scripts that declare them and sets
    them in one batch: one value it cannot parse, and the whole batch (the rules
    file's name included) is dropped without a word, and the script with it.
    """
    problems = []
    for name, value in list(options.deferred.items()):
        if name.startswith("oauth_") and name in options:
            del options.deferred[name]
            try:
                options.set(*(f"{name}={v}" for v in getattr(value, "val", [value])))
            except exceptions.OptionsError as e:  # mitmproxy 12 names the option, 11 does not
                problems.append(str(e) if name in str(e) else f"{name}: {e}")
    return problems


def unknown_options(options: OptManager) -> list[str]:
    """One line for each `oauth_*` option given at start-up that no addon declares.

    mitmproxy says nothing of them: a mistyped `oauth_rule` would leave the
    default rules file in use without a word.
    """
    ours = sorted(n for n in options.keys() if n.startswith("oauth_"))  # noqa: SIM118
    problems = []
    for name in options.deferred:
        if name.startswith("oauth_"):
            hint = difflib.get_close_matches(name, ours, n=1)
            problems.append(
                f"unknown option {name}" + (f" (did you mean {hint[0]}?)" if hint else "")
            )
    return problems


def configure_fetching(cache: TokenCache, client: TokenClient) -> None:
    """Copy the token options onto the cache and the client, which read them per fetch."""
    cache.expiry_delta = ctx.options.oauth_expiry_delta
    cache.default_lifetime = ctx.options.oauth_default_lifetime
    cache.refresh_ahead = ctx.options.oauth_refresh_ahead / 100
    cache.backoff = Backoff(maximum=ctx.options.oauth_backoff_max)
    client.timeout = ctx.options.oauth_token_timeout
