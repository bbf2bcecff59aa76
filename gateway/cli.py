"""``watchllm``: serve | config check | plugins list | keys | users (admin commands plug in)."""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from . import __version__, registry
from .config import ConfigError, load_config

DEFAULT_CONFIG = "config/gateway.yaml"


def _serve(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"error: invalid configuration\n{exc}", file=sys.stderr)
        return 2
    from .server import run

    return run(config, config_path=args.config, host=args.host, port=args.port)


def _config_check(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file)
    except ConfigError as exc:
        print(f"error: invalid configuration\n{exc}", file=sys.stderr)
        return 2
    print(
        f"{args.file}: ok — {len(config.pipeline)} middleware ({', '.join(e.name for e in config.pipeline)}), "
        f"{len(config.providers)} providers, {len(config.models)} models, {len(config.tools)} tools"
    )
    if config.disabled_providers:
        print(f"  optional providers without a key (disabled): {', '.join(config.disabled_providers)}")
    return 0


def _plugins_list(args: argparse.Namespace) -> int:
    rows = registry.listing()
    width = max((len(r.name) for r in rows), default=4)
    for kind in registry.GROUPS:
        print(f"{kind}:")
        for r in rows:
            if r.kind == kind:
                print(f"  {r.name:<{width}}  {r.package} {r.version}  ({r.target})")
    return 0


def _plugins_new(args: argparse.Namespace) -> int:
    scaffold = importlib.import_module("gateway.scaffold")
    return int(scaffold.main(args) or 0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="watchllm", description="WatchLLM: an OpenAI-compatible LLM gateway")
    p.add_argument("--version", action="version", version=f"watchllm {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the gateway")
    s.add_argument("--config", default=DEFAULT_CONFIG, help=f"YAML config (default {DEFAULT_CONFIG})")
    s.add_argument("--host", default=None, help="override server.host")
    s.add_argument("--port", type=int, default=None, help="override server.port")
    s.set_defaults(func=_serve)

    c = sub.add_parser("config", help="configuration tools").add_subparsers(dest="config_cmd", required=True)
    chk = c.add_parser("check", help="validate a config file")
    chk.add_argument("file", nargs="?", default=DEFAULT_CONFIG)
    chk.set_defaults(func=_config_check)

    pl = sub.add_parser("plugins", help="plugin tools").add_subparsers(dest="plugins_cmd", required=True)
    ls = pl.add_parser("list", help="every discovered middleware, provider and tool")
    ls.set_defaults(func=_plugins_list)
    new = pl.add_parser("new", help="scaffold a plugin package")
    new.add_argument("kind", choices=["middleware", "provider", "tool"])
    new.add_argument("name")
    new.add_argument("--dir", default=".", help="where to create the package")
    new.set_defaults(func=_plugins_new)

    # Admin commands (keys, users) live with the admin code.
    try:
        admin_cli = importlib.import_module("gateway.admin.cli")
    except ImportError:
        admin_cli = None
    if admin_cli is not None and hasattr(admin_cli, "add_subcommands"):
        admin_cli.add_subcommands(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from .logs import configure_logging

    configure_logging()
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
