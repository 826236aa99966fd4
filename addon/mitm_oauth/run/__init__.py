"""`mitm-oauth run -- CMD`: an app behind the proxy, its environment set for each runtime."""

from .command import run

__all__ = ["run"]
